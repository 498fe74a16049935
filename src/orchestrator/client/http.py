"""`Client` (blocking) and `AsyncClient` over httpx: login, jobs, tasks, ETag-aware reads."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson

from orchestrator.client import calls
from orchestrator.client.calls import Call, JobClaim
from orchestrator.client.errors import error_for
from orchestrator.client.feed import subscribe

ETAG_CACHE_SIZE = 256
DEFAULT_COLLECTIONS = ("jobs", "tasks")


class _Session:
    """What both clients share: the token, the ETag cache, reading answers."""

    def __init__(self, base_url: str, *, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._credentials: tuple[str, str] | None = None
        self._etags: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    def _key(self, call: Call) -> str:
        return call.path + ("?" + str(sorted(call.params.items())) if call.params else "")

    def _headers(self, call: Call) -> dict[str, str]:
        headers: dict[str, str] = {}
        if call.authenticated and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        cached = self._etags.get(self._key(call)) if call.cacheable else None
        if cached is not None:
            headers["If-None-Match"] = cached[0]
        return headers

    def _relogin_needed(self, call: Call, response: httpx.Response) -> bool:
        """An expired or revoked token, and we know the credentials to get a new one."""
        return response.status_code == 401 and call.authenticated and self._credentials is not None

    def _read(self, call: Call, response: httpx.Response) -> Any:
        key = self._key(call)
        content = response.content
        status = response.status_code
        if status == 304 and call.cacheable and key in self._etags:
            self._etags.move_to_end(key)
            content, status = self._etags[key][1], 200
        body = orjson.loads(content) if content else None
        if status >= 400:
            raise error_for(status, body)
        etag = response.headers.get("etag")
        if call.cacheable and etag and response.status_code == 200:
            self._etags[key] = (etag, content)
            self._etags.move_to_end(key)
            while len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)
        if call.path == "/auth/login" and isinstance(body, dict):
            self.token = str(body["access_token"])
        return call.read(status, body)


class Client(_Session):
    """The blocking client. `with Client(url) as c: c.login(user, password); c.get_job(id)`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        response = self._exchange(call)
        if self._relogin_needed(call, response) and self._credentials is not None:
            login = calls.login(*self._credentials)
            self._read(login, self._exchange(login))
            response = self._exchange(call)
        return self._read(call, response)

    def _exchange(self, call: Call) -> httpx.Response:
        return self._http.request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            headers=self._headers(call),
            timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )

    def login(self, username: str, password: str) -> None:
        """Log in; the client logs in again by itself when the token expires."""
        login = calls.login(username, password)
        self._read(login, self._exchange(login))
        self._credentials = (username, password)

    def subscribe(
        self, collections: Sequence[str] = DEFAULT_COLLECTIONS, *, since: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Change frames over the WebSocket (an async iterator, see `AsyncClient.subscribe`)."""

        async def token(refresh: bool) -> str | None:
            if refresh and self._credentials is not None:
                login = calls.login(*self._credentials)
                self._read(login, await asyncio.to_thread(self._exchange, login))
            return self.token

        return subscribe(self.ws_url, token, collections=collections, since=since)

    def create_job(
        self,
        name: str,
        *,
        description: str | None = None,
        queue: str | None = None,
        payload: dict[str, Any] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> dict[str, Any]:
        call = calls.create_job(
            name,
            description=description,
            queue=queue,
            payload=payload,
            priority=priority,
            max_attempts=max_attempts,
        )
        result: dict[str, Any] = self._send(call)
        return result

    def get_job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._send(calls.get_job(job_id))
        return result

    def list_jobs(self, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._send(calls.list_jobs(params))
        return result

    def delete_job(self, job_id: str) -> None:
        self._send(calls.delete_job(job_id))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._send(calls.cancel_job(job_id))
        return result

    def claim(
        self,
        queues: Sequence[str],
        *,
        lease_seconds: float = 30,
        worker: str | None = None,
        wait: float = 0,
    ) -> JobClaim | None:
        call = calls.claim(queues, lease_seconds=lease_seconds, worker=worker, wait=wait)
        claimed: JobClaim | None = self._send(call)
        return claimed

    def heartbeat(self, job_id: str, token: int, *, lease_seconds: float = 30) -> dict[str, Any]:
        result: dict[str, Any] = self._send(
            calls.heartbeat(job_id, token, lease_seconds=lease_seconds)
        )
        return result

    def complete(self, job_id: str, token: int, result: Any = None) -> dict[str, Any]:
        job: dict[str, Any] = self._send(calls.complete(job_id, token, result))
        return job

    def fail(self, job_id: str, token: int, error: str, *, retry: bool = True) -> dict[str, Any]:
        job: dict[str, Any] = self._send(calls.fail(job_id, token, error, retry=retry))
        return job

    def release(self, job_id: str, token: int) -> dict[str, Any]:
        job: dict[str, Any] = self._send(calls.release(job_id, token))
        return job

    def create_task(self, title: str, *, description: str | None = None) -> dict[str, Any]:
        task: dict[str, Any] = self._send(calls.create_task(title, description=description))
        return task

    def get_task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = self._send(calls.get_task(task_id))
        return task

    def list_tasks(self) -> dict[str, Any]:
        tasks: dict[str, Any] = self._send(calls.list_tasks())
        return tasks


class AsyncClient(_Session):
    """The asyncio client. `async with AsyncClient(url) as c: await c.login(user, password)`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        response = await self._exchange(call)
        if self._relogin_needed(call, response) and self._credentials is not None:
            login = calls.login(*self._credentials)
            self._read(login, await self._exchange(login))
            response = await self._exchange(call)
        return self._read(call, response)

    async def _exchange(self, call: Call) -> httpx.Response:
        return await self._http.request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            headers=self._headers(call),
            timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )

    async def login(self, username: str, password: str) -> None:
        """Log in; the client logs in again by itself when the token expires."""
        login = calls.login(username, password)
        self._read(login, await self._exchange(login))
        self._credentials = (username, password)

    def subscribe(
        self, collections: Sequence[str] = DEFAULT_COLLECTIONS, *, since: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Change frames over the WebSocket, in revision order, resuming after reconnects.

        Yields `{"type": "change", "revision", "collection", "op", "id", "data"}` frames, and
        `{"type": "resync_required", "revision"}` when the server no longer has the changes
        since the last one seen (refetch, then carry on: the iterator continues from there).
        """

        async def token(refresh: bool) -> str | None:
            if refresh and self._credentials is not None:
                login = calls.login(*self._credentials)
                self._read(login, await self._exchange(login))
            return self.token

        return subscribe(self.ws_url, token, collections=collections, since=since)

    async def create_job(
        self,
        name: str,
        *,
        description: str | None = None,
        queue: str | None = None,
        payload: dict[str, Any] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> dict[str, Any]:
        call = calls.create_job(
            name,
            description=description,
            queue=queue,
            payload=payload,
            priority=priority,
            max_attempts=max_attempts,
        )
        result: dict[str, Any] = await self._send(call)
        return result

    async def get_job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(calls.get_job(job_id))
        return result

    async def list_jobs(self, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(calls.list_jobs(params))
        return result

    async def delete_job(self, job_id: str) -> None:
        await self._send(calls.delete_job(job_id))

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(calls.cancel_job(job_id))
        return result

    async def claim(
        self,
        queues: Sequence[str],
        *,
        lease_seconds: float = 30,
        worker: str | None = None,
        wait: float = 0,
    ) -> JobClaim | None:
        call = calls.claim(queues, lease_seconds=lease_seconds, worker=worker, wait=wait)
        claimed: JobClaim | None = await self._send(call)
        return claimed

    async def heartbeat(
        self, job_id: str, token: int, *, lease_seconds: float = 30
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(
            calls.heartbeat(job_id, token, lease_seconds=lease_seconds)
        )
        return result

    async def complete(self, job_id: str, token: int, result: Any = None) -> dict[str, Any]:
        job: dict[str, Any] = await self._send(calls.complete(job_id, token, result))
        return job

    async def fail(
        self, job_id: str, token: int, error: str, *, retry: bool = True
    ) -> dict[str, Any]:
        job: dict[str, Any] = await self._send(calls.fail(job_id, token, error, retry=retry))
        return job

    async def release(self, job_id: str, token: int) -> dict[str, Any]:
        job: dict[str, Any] = await self._send(calls.release(job_id, token))
        return job

    async def create_task(self, title: str, *, description: str | None = None) -> dict[str, Any]:
        task: dict[str, Any] = await self._send(calls.create_task(title, description=description))
        return task

    async def get_task(self, task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = await self._send(calls.get_task(task_id))
        return task

    async def list_tasks(self) -> dict[str, Any]:
        tasks: dict[str, Any] = await self._send(calls.list_tasks())
        return tasks
