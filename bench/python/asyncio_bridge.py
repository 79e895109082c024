"""CPython's side of flotilla's asyncio-bridge figures: loop.run_in_executor on a
concurrent.futures.ThreadPoolExecutor, awaited from a coroutine.

Run by `cargo xtask bench` as

    python3 asyncio_bridge.py RUNNER --threads N --batch N --calls N \
        --warmup-calls N --warmup-batch N

Each runner builds a ThreadPoolExecutor(max_workers=N) and follows measure.py's
protocol inside one coroutine on the default event loop of `asyncio.run` (measure.py's
`main_async`): every call, timed or not, is one `await` made from that coroutine. The
same work as bench/src/asyncio.rs. (The script is not named asyncio.py, which would
hide the standard module from itself.)

Runners:
  one-by-one  await loop.run_in_executor(ex, identity, i) for each i in range(batch),
              one at a time (with --batch 1, the latency of one await)
  gather      await asyncio.gather(*[loop.run_in_executor(ex, identity, i)
              for i in range(batch)])
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from measure import Contender, main_async


def identity(x):
    return x


class RunInExecutor(Contender):
    """loop.run_in_executor on a ThreadPoolExecutor of `workers` threads."""

    def __init__(self, workers, gathered):
        self.loop = asyncio.get_running_loop()
        self.executor = ThreadPoolExecutor(max_workers=workers)
        self.gathered = gathered

    async def call(self, n):
        loop, ex = self.loop, self.executor
        if self.gathered:
            return await asyncio.gather(
                *[loop.run_in_executor(ex, identity, i) for i in range(n)]
            )
        return [await loop.run_in_executor(ex, identity, i) for i in range(n)]

    def check(self, n, results):
        return results == list(range(n))

    def close(self):
        self.executor.shutdown(wait=True)


RUNNERS = {
    "one-by-one": lambda args: RunInExecutor(args.threads, gathered=False),
    "gather": lambda args: RunInExecutor(args.threads, gathered=True),
}

if __name__ == "__main__":
    main_async(RUNNERS, __doc__)
