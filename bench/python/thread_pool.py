"""CPython's side of flotilla's thread-pool figures, with concurrent.futures.

Run by `cargo xtask bench` as

    python3 thread_pool.py RUNNER --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

It builds a ThreadPoolExecutor with N threads, makes the untimed warm-up calls, then
times each call of RUNNER with `batch` tasks, checks its results, and prints
{"samples_ns": [...]} on stdout: the same protocol and the same work as the Rust
contenders in bench/src/thread_pool.rs.

Runners:
  submit  submit `batch` tasks returning their index, then collect every result
          (with --batch 1, a single round trip)
  map     list(executor.map(inc, range(batch))): `x + 1`, in input order
"""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def identity(x):
    return x


def inc(x):
    return x + 1


def submit(executor, n):
    futures = [executor.submit(identity, i) for i in range(n)]
    return [f.result() for f in futures]


def check_submit(n, results):
    return len(results) == n and sum(results) == n * (n - 1) // 2


def map_(executor, n):
    return list(executor.map(inc, range(n)))


def check_map(n, results):
    return results == list(range(1, n + 1))


RUNNERS = {"submit": (submit, check_submit), "map": (map_, check_map)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runner", choices=RUNNERS)
    for flag in ("--threads", "--batch", "--calls", "--warmup-calls", "--warmup-batch"):
        parser.add_argument(flag, type=int, required=True)
    args = parser.parse_args()
    run, check = RUNNERS[args.runner]

    samples_ns = []
    with ThreadPoolExecutor(max_workers=args.threads) as executor:
        for _ in range(args.warmup_calls):
            if not check(args.warmup_batch, run(executor, args.warmup_batch)):
                sys.exit(f"{args.runner} returned wrong results")
        for _ in range(args.calls):
            start = time.perf_counter_ns()
            results = run(executor, args.batch)
            samples_ns.append(time.perf_counter_ns() - start)
            if not check(args.batch, results):
                sys.exit(f"{args.runner} returned wrong results")
    print(json.dumps({"samples_ns": samples_ns}))


if __name__ == "__main__":
    main()
