"""Celery with the Redis broker: the app, the no-op task, and its producer."""

from __future__ import annotations

import os

from celery import Celery

from bench.rivals.common import done, produce, producer_args

QUEUE = "bench"

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,  # no result backend: the job's effect is all that counts
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    # Keys of this benchmark only, under its own prefix (deleted after the run).
    broker_transport_options={"global_keyprefix": os.environ.get("BENCH_REDIS_PREFIX", "")},
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(n: int) -> None:
    done(n)


def main() -> None:
    args = producer_args()
    produce(noop.delay, first=args.first, count=args.count, rate=args.rate, out=args.out)


if __name__ == "__main__":
    main()
