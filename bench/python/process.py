"""CPython's side of flotilla's process figures, with multiprocessing.

Run by `cargo xtask bench` as

    python3 process.py METHOD --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

Each call starts `batch` processes one after another under the start method METHOD
(fork, spawn or forkserver), each running a trivial target that exits with 42, and
joins each before starting the next; the results are the exit codes. The same work as
bench/src/process.rs, under the protocol of measure.py.
"""

import multiprocessing
import sys

from measure import Contender, main

VALUE = 42


def child():
    # A Process has no return value: the exit code carries the answer.
    sys.exit(VALUE)


class StartJoin(Contender):
    def __init__(self, method):
        self.context = multiprocessing.get_context(method)

    def call(self, n):
        codes = []
        for _ in range(n):
            p = self.context.Process(target=child)
            p.start()
            p.join()
            codes.append(p.exitcode)
        return codes

    def check(self, n, results):
        return len(results) == n and all(code == VALUE for code in results)


RUNNERS = {
    method: (lambda args, method=method: StartJoin(method))
    for method in ("fork", "spawn", "forkserver")
}

if __name__ == "__main__":
    main(RUNNERS, __doc__)
