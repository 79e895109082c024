"""The measuring protocol shared by process.py, process_pool.py, connection.py and
asyncio_bridge.py.

A script calls `main(RUNNERS, __doc__)`, where each runner is `setup(args) ->
Contender`. The protocol is the Rust harness's (bench/src/harness.rs): make the untimed
warm-up calls, time each call alone, check its results and call `verify()` untimed after
it, then print {"samples_ns": [...]} on stdout.

`main_async(RUNNERS, __doc__)` is the same protocol run inside one coroutine on one
event loop (`asyncio.run`), for contenders whose `call(n)` is a coroutine: each timed
call is one `await`, so no call pays for entering the loop.
"""

import argparse
import asyncio
import json
import sys
import time


class Contender:
    """What a runner's setup returns: `call(n)` does n tasks and returns their results;
    `check(n, results)` and `verify()` (untimed) fail the round when something is wrong;
    `close()` ends whatever setup started."""

    def call(self, n):
        raise NotImplementedError

    def check(self, n, results):
        raise NotImplementedError

    def verify(self):
        return None

    def close(self):
        return None


def arguments(runners, doc):
    """The runner's name and the plan, from the command line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("runner", choices=runners)
    for flag in ("--threads", "--batch", "--calls", "--warmup-calls", "--warmup-batch"):
        parser.add_argument(flag, type=int, required=True)
    return parser.parse_args()


def checked(contender, args, n, results):
    """Ends the round when a call's results (or what `verify` sees) are wrong."""
    if not contender.check(n, results):
        sys.exit(f"{args.runner} returned wrong results: {results[:4]!r}")
    if problem := contender.verify():
        sys.exit(f"{args.runner}: {problem}")


def main(runners, doc):
    args = arguments(runners, doc)
    contender = runners[args.runner](args)
    samples_ns = []
    try:
        for _ in range(args.warmup_calls):
            checked(contender, args, args.warmup_batch, contender.call(args.warmup_batch))
        for _ in range(args.calls):
            start = time.perf_counter_ns()
            results = contender.call(args.batch)
            samples_ns.append(time.perf_counter_ns() - start)
            checked(contender, args, args.batch, results)
    finally:
        contender.close()
    print(json.dumps({"samples_ns": samples_ns}))


async def measure_async(runners, args):
    """The protocol inside one coroutine; the setup runs on the loop too."""
    contender = runners[args.runner](args)
    samples_ns = []
    try:
        for _ in range(args.warmup_calls):
            results = await contender.call(args.warmup_batch)
            checked(contender, args, args.warmup_batch, results)
        for _ in range(args.calls):
            start = time.perf_counter_ns()
            results = await contender.call(args.batch)
            samples_ns.append(time.perf_counter_ns() - start)
            checked(contender, args, args.batch, results)
    finally:
        contender.close()
    return samples_ns


def main_async(runners, doc):
    args = arguments(runners, doc)
    samples_ns = asyncio.run(measure_async(runners, args))
    print(json.dumps({"samples_ns": samples_ns}))
