"""The RQ side of `futurepool-bench cluster`: no-op jobs through one Redis with N workers.

Usage: python cluster_rq.py REDIS_URL JOBS WORKERS simple|fork

Starts WORKERS `rq worker` processes (SimpleWorker runs jobs in the worker process; the default
Worker forks a child per job), waits until they are registered, then times enqueueing JOBS no-op
jobs and waiting until every one has finished. Prints one JSON line: {"jobs": N, "seconds": S}.
"""

import json
import os
import subprocess
import sys
import time

from redis import Redis
from rq import Queue, Worker


def noop():
    return None


def main():
    url, jobs, workers, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    redis = Redis.from_url(url)
    queue = Queue("futurepool-bench", connection=redis)
    queue.empty()

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=here)
    worker_class = "rq.worker.SimpleWorker" if kind == "simple" else "rq.worker.Worker"
    command = [sys.executable, "-m", "rq.cli", "worker", "--url", url, "--worker-class",
               worker_class, "--quiet", "futurepool-bench"]
    processes = [subprocess.Popen(command, env=env, cwd=here, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        deadline = time.time() + 60
        while len(Worker.all(queue=queue)) < workers:
            if time.time() > deadline:
                sys.exit("the RQ workers did not start")
            time.sleep(0.05)

        registry = queue.finished_job_registry
        already = registry.count
        start = time.perf_counter()
        queue.enqueue_many([Queue.prepare_data("cluster_rq.noop", result_ttl=600) for _ in range(jobs)])
        while registry.count - already < jobs:
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        print(json.dumps({"jobs": jobs, "seconds": seconds}))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()


if __name__ == "__main__":
    main()
