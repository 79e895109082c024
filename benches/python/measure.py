"""The measuring protocol shared by process.py, process_pool.py and connection.py.

A script calls `main(RUNNERS)`, where each runner is `setup(args) -> Contender`. The
protocol is the Rust harness's (bench/src/harness.rs): make the untimed warm-up calls,
time each call alone, check its results and call `verify()` untimed after it, then
print {"samples_ns": [...]} on stdout.
"""

import argparse
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


def main(runners, doc):
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("runner", choices=runners)
    for flag in ("--threads", "--batch", "--calls", "--warmup-calls", "--warmup-batch"):
        parser.add_argument(flag, type=int, required=True)
    args = parser.parse_args()

    contender = runners[args.runner](args)
    samples_ns = []
    try:
        for _ in range(args.warmup_calls):
            results = contender.call(args.warmup_batch)
            if not contender.check(args.warmup_batch, results):
                sys.exit(f"{args.runner} returned wrong results: {results[:4]!r}")
            if problem := contender.verify():
                sys.exit(f"{args.runner}: {problem}")
        for _ in range(args.calls):
            start = time.perf_counter_ns()
            results = contender.call(args.batch)
            samples_ns.append(time.perf_counter_ns() - start)
            if not contender.check(args.batch, results):
                sys.exit(f"{args.runner} returned wrong results: {results[:4]!r}")
            if problem := contender.verify():
                sys.exit(f"{args.runner}: {problem}")
    finally:
        contender.close()
    print(json.dumps({"samples_ns": samples_ns}))
