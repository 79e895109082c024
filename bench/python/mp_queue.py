"""CPython's side of flotilla's queue figures, with multiprocessing.Queue.

Run by `cargo xtask bench` as

    python3 mp_queue.py KIND-PxC --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

KIND is `small` (int items, counted as 8 bytes each), `kib64` (64 KiB bytes items) or
`mib` (1 MiB bytes items). P
producer processes and C consumer processes, forkserver children started untimed, wait
on a control queue; each call tells each producer how many items to put (n/P, the
remainder to the first), each producer puts them and then one None per consumer it
serves, each consumer, told to go on another queue, gets until None, reports (items,
bytes) on a result queue and waits for the next go.
The same work as bench/src/queue.rs, under the protocol of measure.py.
"""

import multiprocessing

from measure import Contender, main


def make(kind):
    if kind == "small":
        return 0
    size = 64 << 10 if kind == "kib64" else 1 << 20
    return bytes(((i * 2654435761) & 0xFFFFFFFF) >> 24 for i in range(size))


def producer(kind, control, data, ends):
    item = make(kind)
    while True:
        n = control.get()
        if n is None:
            return
        for _ in range(n):
            data.put(item)
        for _ in range(ends):
            data.put(None)


def consumer(kind, go, data, results):
    while go.get() is not None:
        items = nbytes = 0
        while (item := data.get()) is not None:
            items += 1
            nbytes += 8 if kind == "small" else len(item)
        results.put((items, nbytes))


class Queues(Contender):
    def __init__(self, kind, producers, consumers):
        self.size = {"small": 8, "kib64": 64 << 10, "mib": 1 << 20}[kind]
        context = multiprocessing.get_context("forkserver")
        self.control = context.Queue()
        self.data = context.Queue()
        self.results = context.Queue()
        self.go = context.Queue()
        ends = consumers // producers
        self.producers = [
            context.Process(target=producer, args=(kind, self.control, self.data, ends))
            for _ in range(producers)
        ]
        self.consumers = [
            context.Process(target=consumer, args=(kind, self.go, self.data, self.results))
            for _ in range(consumers)
        ]
        for p in self.producers + self.consumers:
            p.start()

    def call(self, n):
        for _ in self.consumers:
            self.go.put(True)
        p = len(self.producers)
        for i in range(p):
            self.control.put(n // p + (n % p if i == 0 else 0))
        items = nbytes = 0
        for _ in self.consumers:
            i, b = self.results.get()
            items += i
            nbytes += b
        return [items, nbytes]

    def check(self, n, results):
        return results == [n, n * self.size]

    def close(self):
        for _ in self.producers:
            self.control.put(None)
        for _ in self.consumers:
            self.go.put(None)
        for p in self.producers + self.consumers:
            p.join()


RUNNERS = {
    f"{kind}-{p}x{c}": (lambda args, kind=kind, p=p, c=c: Queues(kind, p, c))
    for kind in ("small", "kib64", "mib")
    for (p, c) in ((1, 1), (2, 2))
}

if __name__ == "__main__":
    main(RUNNERS, __doc__)
