"""CPython's side of flotilla's manager figures, with multiprocessing's Manager.

Run by `cargo xtask bench` as

    python3 manager.py RUNNER --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

Every runner starts `multiprocessing.get_context("forkserver").Manager()` once, untimed.
Item i of a call: for the dict runners, `d[k] = i` for even i and `d[k]` (checked to be
i - 1) for odd i, k = (i // 2) % 64 (plus an offset per thread or client);
`queue`: `q.put(i)` then `q.get()` (checked); `lock`: `acquire()` then `release()`.
`dict-sequential` does the items in order; `dict-pipelined` splits them into 8 runs,
one per thread (started per call) sharing the proxy; `dict-4-clients` sends each of 4
forkserver processes, given the proxy as an argument, its quarter over a pipe and waits
for their answers. A call returns the items' numbers in order. The same work as
bench/src/manager.rs, under the protocol of measure.py.
"""

import multiprocessing
import threading

from measure import Contender, main

THREADS = 8
CLIENTS = 4


def dict_items(d, start, end, base):
    for i in range(start, end):
        k = base + (i // 2) % 64
        if i % 2 == 0:
            d[k] = i
        else:
            got = d[k]
            if got != i - 1:
                raise RuntimeError(f"d[{k}] was {got!r}, not {i - 1}")


def split(n, parts):
    per = (n // parts) & ~1
    return [(p * per, n if p + 1 == parts else (p + 1) * per) for p in range(parts)]


def dict_client(d, conn, base):
    while True:
        try:
            start, end = conn.recv()
        except EOFError:
            return
        try:
            dict_items(d, start, end, base)
            conn.send(None)
        except Exception as e:  # the parent fails the round with it
            conn.send(repr(e))


class WithManager(Contender):
    def __init__(self):
        self.context = multiprocessing.get_context("forkserver")
        self.manager = self.context.Manager()

    def check(self, n, results):
        return results == list(range(n))

    def close(self):
        self.manager.shutdown()


class DictSequential(WithManager):
    def __init__(self):
        super().__init__()
        self.d = self.manager.dict()

    def call(self, n):
        dict_items(self.d, 0, n, 0)
        return list(range(n))


class DictPipelined(WithManager):
    def __init__(self):
        super().__init__()
        self.d = self.manager.dict()

    def call(self, n):
        errors = []

        def run(start, end, base):
            try:
                dict_items(self.d, start, end, base)
            except Exception as e:
                errors.append(e)

        threads = [
            threading.Thread(target=run, args=(start, end, t * 64))
            for t, (start, end) in enumerate(split(n, THREADS))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return list(range(n))


class DictClients(WithManager):
    def __init__(self):
        super().__init__()
        self.d = self.manager.dict()
        self.conns, self.clients = [], []
        for c in range(CLIENTS):
            ours, theirs = self.context.Pipe()
            p = self.context.Process(
                target=dict_client, args=(self.d, theirs, c * 64), daemon=True
            )
            p.start()
            theirs.close()
            self.conns.append(ours)
            self.clients.append(p)

    def call(self, n):
        for conn, run in zip(self.conns, split(n, CLIENTS)):
            conn.send(run)
        for conn in self.conns:
            problem = conn.recv()
            if problem is not None:
                raise RuntimeError(problem)
        return list(range(n))

    def close(self):
        for conn in self.conns:
            conn.close()
        for p in self.clients:
            p.join()
        super().close()


class QueueCalls(WithManager):
    def __init__(self):
        super().__init__()
        self.q = self.manager.Queue()

    def call(self, n):
        out = []
        for i in range(n):
            self.q.put(i)
            out.append(self.q.get())
        return out


class LockCalls(WithManager):
    def __init__(self):
        super().__init__()
        self.lock = self.manager.Lock()

    def call(self, n):
        for _ in range(n):
            self.lock.acquire()
            self.lock.release()
        return list(range(n))


RUNNERS = {
    "dict-sequential": lambda args: DictSequential(),
    "dict-pipelined": lambda args: DictPipelined(),
    "dict-4-clients": lambda args: DictClients(),
    "queue": lambda args: QueueCalls(),
    "lock": lambda args: LockCalls(),
}

if __name__ == "__main__":
    main(RUNNERS, __doc__)
