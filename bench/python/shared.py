"""CPython's side of flotilla's shared-counter figures, with multiprocessing.Value.

Run by `cargo xtask bench` as

    python3 shared.py RUNNER --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

`locked-2`: two forkserver workers, started once, each add 1 to a shared
`Value('q', 0)` half of `batch` times per call, every increment under
`get_lock()`; each call sends each worker its count over a pipe and waits for both
answers. `locked-1`: the measuring process makes the `batch` increments itself. The
result of a call is how much the counter grew. The same work as bench/src/shared.rs,
under the protocol of measure.py.
"""

import multiprocessing

from measure import Contender, main


def add(value, n):
    lock = value.get_lock()
    for _ in range(n):
        with lock:
            value.value += 1


def worker(value, conn):
    while True:
        try:
            n = conn.recv()
        except EOFError:
            return
        add(value, n)
        conn.send(n)


class TwoWorkers(Contender):
    def __init__(self):
        context = multiprocessing.get_context("forkserver")
        self.value = context.Value("q", 0)
        self.conns, self.workers = [], []
        for _ in range(2):
            ours, theirs = context.Pipe()
            p = context.Process(target=worker, args=(self.value, theirs), daemon=True)
            p.start()
            theirs.close()
            self.conns.append(ours)
            self.workers.append(p)

    def call(self, n):
        before = self.value.value
        half = n // 2
        for i, conn in enumerate(self.conns):
            conn.send(half + (n % 2 if i == 0 else 0))
        for conn in self.conns:
            conn.recv()
        return [self.value.value - before]

    def check(self, n, results):
        return results == [n]

    def close(self):
        for conn in self.conns:
            conn.close()
        for p in self.workers:
            p.join()


class Alone(Contender):
    def __init__(self):
        self.value = multiprocessing.Value("q", 0)

    def call(self, n):
        before = self.value.value
        add(self.value, n)
        return [self.value.value - before]

    def check(self, n, results):
        return results == [n]


RUNNERS = {
    "locked-2": lambda args: TwoWorkers(),
    "locked-1": lambda args: Alone(),
}

if __name__ == "__main__":
    main(RUNNERS, __doc__)
