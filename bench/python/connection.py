"""CPython's side of flotilla's connection figures, with multiprocessing.Pipe.

Run by `cargo xtask bench` as

    python3 connection.py KIND-SIZE --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

KIND is `round-trip` (each call sends `batch` messages of SIZE bytes to a child
process, one at a time, each followed by waiting for the child's echo) or `throughput`
(each call sends `batch` messages one way, then a one-byte end-of-batch message, and
waits for the child's count of the messages and bytes it received). The child is
started with the forkserver start method, untimed. The same work and the same message
pattern as bench/src/connection.rs, under the protocol of measure.py.
"""

import multiprocessing

from measure import Contender, main

END_OF_BATCH = b"!"


def message(size):
    """bench/src/connection.rs's pattern."""
    return bytearray(((i * 2654435761) & 0xFFFFFFFF) >> 24 for i in range(size))


def echo(conn):
    while True:
        try:
            m = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(m)


def sink(conn):
    messages = nbytes = 0
    while True:
        try:
            m = conn.recv_bytes()
        except EOFError:
            return
        if m == END_OF_BATCH:
            conn.send((messages, nbytes))
            messages = nbytes = 0
        else:
            messages += 1
            nbytes += len(m)


class Peer(Contender):
    """A duplex Pipe to a forkserver child running `target` on the other end."""

    def __init__(self, size, target):
        self.size = size
        self.message = message(size)
        self.counter = 0
        context = multiprocessing.get_context("forkserver")
        self.conn, child_end = context.Pipe(duplex=True)
        self.child = context.Process(target=target, args=(child_end,))
        self.child.start()
        child_end.close()

    def stamp(self):
        """Changes the first and last bytes, as the Rust side does."""
        self.counter = (self.counter + 1) & 0xFF
        self.message[0] = self.counter
        self.message[-1] = 0xFF ^ self.counter

    def close(self):
        self.conn.close()
        self.child.join()


class RoundTrip(Peer):
    def __init__(self, size):
        super().__init__(size, echo)
        self.echo = b""

    def call(self, n):
        lengths = []
        for _ in range(n):
            self.stamp()
            self.conn.send_bytes(self.message)
            self.echo = self.conn.recv_bytes()
            lengths.append(len(self.echo))
        return lengths

    def check(self, n, results):
        return len(results) == n and all(length == self.size for length in results)

    def verify(self):
        if self.echo != self.message:
            return "the echo differs from the message sent"
        return None


class Throughput(Peer):
    def __init__(self, size):
        super().__init__(size, sink)

    def call(self, n):
        for _ in range(n):
            self.stamp()
            self.conn.send_bytes(self.message)
        self.conn.send_bytes(END_OF_BATCH)
        return list(self.conn.recv())

    def check(self, n, results):
        return results == [n, n * self.size]


SIZES = (64, 4096, 65536, 1048576)
RUNNERS = {
    **{f"round-trip-{size}": (lambda args, size=size: RoundTrip(size)) for size in SIZES},
    **{f"throughput-{size}": (lambda args, size=size: Throughput(size)) for size in SIZES},
}

if __name__ == "__main__":
    main(RUNNERS, __doc__)
