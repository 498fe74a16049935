"""A TCP proxy on a loopback port, to cut and restore a real network path in tests.

    async with NetProxy(upstream_host, upstream_port) as proxy:
        ... connect the app to proxy.host:proxy.port ...
        await proxy.cut()        # drop every open connection and refuse new ones
        proxy.restore()          # accept and forward again
        proxy.blackhole()        # accept, but forward nothing (a hung peer, not a refused one)
        proxy.connect_delay = 3  # new connections are forwarded only after this long

It is a real network component: bytes go through real sockets, so the client sees exactly what a
failing network gives it (resets, refused connections, silence).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Literal

Mode = Literal["forward", "refuse", "blackhole"]


class NetProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        self.mode: Mode = "forward"
        self.connections = 0  # accepted so far, whatever the mode
        self.connect_delay = 0.0  # seconds before a new connection is forwarded
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> NetProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> NetProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def restore(self) -> None:
        """Forward new connections again."""
        self.mode = "forward"

    async def cut(self) -> None:
        """Reset every open connection; new ones are accepted and closed at once."""
        self.mode = "refuse"
        await self._drop_all()

    async def blackhole(self) -> None:
        """Drop open connections; new ones are accepted but never answered."""
        self.mode = "blackhole"
        await self._drop_all()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._drop_all()

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.mode == "refuse":
                writer.transport.abort()
            elif self.mode == "blackhole":
                await reader.read()  # hold the connection open, answer nothing, until dropped
            else:
                await self._forward(reader, writer)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connect_delay:
            await asyncio.sleep(self.connect_delay)
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        self._writers.add(up_writer)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()
