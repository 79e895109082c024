"""mpi4py's side of flotilla's MPI figures, with mpi4py.futures.

Run by `cargo xtask bench` as

    mpiexec -n 3 python3 -m mpi4py.futures mpi_pool.py RUNNER --threads N --batch N \
        --calls N --warmup-calls N --warmup-batch N

Under `-m mpi4py.futures`, rank 0 runs this script and ranks 1..N-1 serve its
MPIPoolExecutor. The same work as bench/src/mpi_pool.rs; the protocol is measure.py's.

Runners:
  submit   MPIPoolExecutor: submit `batch` tasks returning their argument, then
           collect every result in order
  map      list(MPIPoolExecutor.map(inc, range(batch), chunksize=1000))
"""

from mpi4py.futures import MPIPoolExecutor

from measure import Contender, main

CHUNKSIZE = 1000


def identity(x):
    return x


def inc(x):
    return x + 1


class Submit(Contender):
    def __init__(self, args):
        self.executor = MPIPoolExecutor()

    def call(self, n):
        futures = [self.executor.submit(identity, i) for i in range(n)]
        return [f.result() for f in futures]

    def check(self, n, results):
        return results == list(range(n))

    def close(self):
        self.executor.shutdown()


class Map(Submit):
    def call(self, n):
        return list(self.executor.map(inc, range(n), chunksize=CHUNKSIZE))

    def check(self, n, results):
        return results == list(range(1, n + 1))


if __name__ == "__main__":
    main({"submit": Submit, "map": Map}, __doc__)
