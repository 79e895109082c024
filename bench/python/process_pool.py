"""CPython's side of flotilla's process-pool figures, with concurrent.futures and
multiprocessing.

Run by `cargo xtask bench` as

    python3 process_pool.py RUNNER --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

Each runner builds a pool of N worker processes the way a Python user writes it, with
the default start method (fork on Linux up to 3.13, forkserver from 3.14), starts every
worker before timing (it submits batches of tasks returning the worker's pid until N
pids have come back), then follows the protocol of measure.py. The same work as
bench/src/process_pool.rs.

The start method is the default rather than flotilla's forkserver because CPython's
Pool is several times slower on forkserver workers than on fork or spawn ones on the
machine these figures were first taken on (ProcessPoolExecutor is not): the default is
both what users get and the stronger baseline.

Runners:
  ppe-submit   ProcessPoolExecutor: submit `batch` tasks returning their argument,
               then collect every result in order (with --batch 1, one round trip)
  pool-apply   multiprocessing.Pool: apply_async each task, then get every result
  ppe-map      list(ProcessPoolExecutor.map(inc, range(batch), chunksize=1000))
  pool-map     Pool.map(inc, range(batch), chunksize=1000)
  ppe-as-completed     ProcessPoolExecutor: submit inc(i) for each i, then the
                       results in completion order with as_completed
  pool-imap-unordered  list(Pool.imap_unordered(inc, range(batch))), chunksize 1
  pool-imap-unordered-chunked  the same with chunksize=100
"""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

from measure import Contender, main

CHUNKSIZE = 1000
UNORDERED_CHUNKSIZE = 100
WARM_UP_TRIES = 50
WARM_UP_TASKS = 200


def identity(x):
    return x


def inc(x):
    return x + 1


def worker_pid(_):
    return os.getpid()


def warm_up(run_pids, workers):
    """Calls run_pids(WARM_UP_TASKS) until `workers` different workers have answered."""
    pids = set()
    for _ in range(WARM_UP_TRIES):
        pids.update(run_pids(WARM_UP_TASKS))
        if len(pids) >= workers:
            return
    raise RuntimeError(f"only {len(pids)} of {workers} workers answered the warm-up")


def check_submit(n, results):
    return results == list(range(n))


def check_map(n, results):
    return results == list(range(1, n + 1))


def check_unordered(n, results):
    return sorted(results) == list(range(1, n + 1))


CHECKS = {
    "submit": check_submit,
    "map": check_map,
    "unordered": check_unordered,
    "unordered-chunked": check_unordered,
}


class Executor(Contender):
    """concurrent.futures.ProcessPoolExecutor."""

    def __init__(self, workers, kind):
        self.executor = ProcessPoolExecutor(max_workers=workers)
        self.kind = kind
        warm_up(self.pids, workers)

    def pids(self, n):
        futures = [self.executor.submit(worker_pid, None) for _ in range(n)]
        return [f.result() for f in futures]

    def call(self, n):
        if self.kind == "map":
            return list(self.executor.map(inc, range(n), chunksize=CHUNKSIZE))
        if self.kind == "unordered":
            futures = [self.executor.submit(inc, i) for i in range(n)]
            return [f.result() for f in as_completed(futures)]
        futures = [self.executor.submit(identity, i) for i in range(n)]
        return [f.result() for f in futures]

    def check(self, n, results):
        return CHECKS[self.kind](n, results)

    def close(self):
        self.executor.shutdown(wait=True)


class Pool(Contender):
    """multiprocessing.Pool."""

    def __init__(self, workers, kind):
        self.pool = multiprocessing.Pool(workers)
        self.kind = kind
        warm_up(self.pids, workers)

    def pids(self, n):
        results = [self.pool.apply_async(worker_pid, (None,)) for _ in range(n)]
        return [r.get() for r in results]

    def call(self, n):
        if self.kind == "map":
            return self.pool.map(inc, range(n), chunksize=CHUNKSIZE)
        if self.kind == "unordered":
            return list(self.pool.imap_unordered(inc, range(n)))
        if self.kind == "unordered-chunked":
            return list(self.pool.imap_unordered(inc, range(n), chunksize=UNORDERED_CHUNKSIZE))
        results = [self.pool.apply_async(identity, (i,)) for i in range(n)]
        return [r.get() for r in results]

    def check(self, n, results):
        return CHECKS[self.kind](n, results)

    def close(self):
        self.pool.close()
        self.pool.join()


RUNNERS = {
    "ppe-submit": lambda args: Executor(args.threads, "submit"),
    "pool-apply": lambda args: Pool(args.threads, "submit"),
    "ppe-map": lambda args: Executor(args.threads, "map"),
    "pool-map": lambda args: Pool(args.threads, "map"),
    "ppe-as-completed": lambda args: Executor(args.threads, "unordered"),
    "pool-imap-unordered": lambda args: Pool(args.threads, "unordered"),
    "pool-imap-unordered-chunked": lambda args: Pool(args.threads, "unordered-chunked"),
}

if __name__ == "__main__":
    main(RUNNERS, __doc__)
