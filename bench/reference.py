"""The reference: a raw ASGI app returning a small JSON body, under the service's uvicorn settings.

Run as `python -m bench.reference --port N`. Every figure of the benchmark is a ratio to this app,
measured in the same run, so the machine's speed and noise cancel out.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from orchestrator.cli import UVICORN_OPTIONS

_BODY = b'{"status":"healthy"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
