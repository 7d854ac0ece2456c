"""Python's ThreadPoolExecutor measured the way `futurepool-bench threads` measures the Rust pools.

Prints key=value lines: throughput (tasks/s, submit then collect every result), memory_per_task
(resident bytes per pending no-op task behind blocked workers, handles kept), latency_p50_us and
latency_p99_us (submit to start on an idle pool). Two workers throughout. Python is slow enough
that fewer tasks give a stable figure: 200,000 for throughput and memory.
"""

import gc
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

WORKERS = 2
TASKS = 200_000
LATENCY_SAMPLES = 2_000


def noop():
    return None


def throughput():
    with ThreadPoolExecutor(WORKERS) as pool:
        pool.submit(noop).result()
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            futures = [pool.submit(noop) for _ in range(TASKS)]
            for future in futures:
                future.result()
            del futures
            best = min(best, time.perf_counter() - start)
    return TASKS / best


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_task():
    release = threading.Event()
    started = threading.Semaphore(0)

    def block():
        started.release()
        release.wait()

    pool = ThreadPoolExecutor(WORKERS)
    for _ in range(WORKERS):
        pool.submit(block)
    for _ in range(WORKERS):
        started.acquire()
    gc.collect()
    before = resident_bytes()
    futures = [pool.submit(noop) for _ in range(TASKS)]
    grown = resident_bytes() - before
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    del futures
    return grown / TASKS


def latency():
    samples = []
    with ThreadPoolExecutor(WORKERS) as pool:
        pool.submit(noop).result()
        for _ in range(LATENCY_SAMPLES):
            time.sleep(0.0003)
            submitted = time.perf_counter()
            started = pool.submit(time.perf_counter).result()
            samples.append((started - submitted) * 1e6)
    samples.sort()
    return samples[len(samples) // 2], samples[int((len(samples) - 1) * 0.99)]


def main():
    print(f"throughput={throughput()}")
    print(f"memory_per_task={memory_per_task()}")
    p50, p99 = latency()
    print(f"latency_p50_us={p50}")
    print(f"latency_p99_us={p99}")


if __name__ == "__main__":
    main()
