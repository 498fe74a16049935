"""procrastinate on PostgreSQL: the app, the no-op task, and its producer."""

from __future__ import annotations

import os

import procrastinate

from bench.rivals.common import done, produce, producer_args

QUEUE = "bench"

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PROCRASTINATE_DSN"])
)


@app.task(name="noop", queue=QUEUE)
async def noop(n: int) -> None:
    done(n)


def main() -> None:
    args = producer_args()
    with app.open():
        produce(
            lambda n: noop.defer(n=n),
            first=args.first,
            count=args.count,
            rate=args.rate,
            out=args.out,
        )


if __name__ == "__main__":
    main()
