"""This service: the producer (the SDK's blocking client) and the `orchestrator worker` handler."""

from __future__ import annotations

import os
from typing import Any

from bench.rivals.common import done, produce, producer_args
from orchestrator.client import Client

QUEUE = "bench"


async def handle(job: dict[str, Any]) -> None:
    """The no-op job (async: the worker runs it on its loop, no thread hop)."""
    done(int(job["payload"]["n"]))


def main() -> None:
    args = producer_args()
    with Client(os.environ["ORCH_URL"], timeout=30) as client:
        client.login(os.environ["ORCH_USERNAME"], os.environ["ORCH_PASSWORD"])
        produce(
            lambda n: client.create_job("noop", queue=QUEUE, payload={"n": n}),
            first=args.first,
            count=args.count,
            rate=args.rate,
            out=args.out,
        )


if __name__ == "__main__":
    main()
