"""`Client` (blocking) and `AsyncClient` over httpx: one send path, ETag-aware, logs in again.

A request's whole course (the request, a second login when the token expired, reading the
answer into a result or an exception, the ETag cache) is one generator, `_Session._flow`, that
yields the requests to send and receives their answers. Each client only carries them over its
own transport, so the blocking and the asyncio client cannot drift apart, and each call of the
API is written once, in `calls.py`, and bound to both clients by `_Endpoint`.
"""

from __future__ import annotations

import abc
import functools
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx
import orjson

from orchestrator.client import calls
from orchestrator.client.calls import Call
from orchestrator.client.errors import error_for
from orchestrator.client.feed import Subscription, TokenSource, subscribe

ETAG_CACHE_SIZE = 256
LEASE_SECRETS = 10_000
DEFAULT_COLLECTIONS = ("jobs", "tasks")

P = ParamSpec("P")
R = TypeVar("R")
Flow = Generator[httpx.Request, httpx.Response, R]


class _Session:
    """What both clients share: the token, the ETag cache, and the course of every call."""

    _http: httpx.Client | httpx.AsyncClient

    def __init__(self, base_url: str, *, token: str | None, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        # A key acts as its user without a login; read like other SDKs read theirs.
        self.api_key = api_key if api_key is not None else os.environ.get("ORCH_API_KEY") or None
        self.refresh_token: str | None = None
        self._credentials: tuple[str, str] | None = None
        # path (+ query) → (ETag, body) of answers this client has seen
        self._etags: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        # (job id, token) → secret of the leases this client was granted, for the single-job
        # lease calls made without one
        self._lease_secrets: OrderedDict[tuple[str, int], str] = OrderedDict()

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    def etag(self, path: str) -> str | None:
        """The ETag of the resource at `path` as this client last read or wrote it."""
        cached = self._etags.get(path)
        return cached[0] if cached is not None else None

    def _flow(self, call: Call[R]) -> Flow[R]:
        response = yield self._request(call)
        if response.status_code == 401 and call.authenticated and self.refresh_token is not None:
            # An expired token: exchange the refresh token, then repeat the call.
            exchange = calls.refresh(self.refresh_token)
            answer = yield self._request(exchange)
            if answer.status_code == 200:
                self._read(exchange, answer)
                response = yield self._request(call)
            else:
                self.refresh_token = None  # used up, expired or revoked: the password is next
        if response.status_code == 401 and call.authenticated and self._credentials is not None:
            # A revoked session: log in again once, then repeat the call.
            login = calls.login(*self._credentials)
            self._read(login, (yield self._request(login)))
            response = yield self._request(call)
        return self._read(call, response)

    def _request(self, call: Call[Any]) -> httpx.Request:
        headers: dict[str, str] = dict(call.headers) if call.headers else {}
        bearer = self.token or self.api_key
        if call.authenticated and bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        key = _key(call)
        if call.cacheable and key in self._etags:
            headers["If-None-Match"] = self._etags[key][0]
        if call.guarded and "If-Match" not in headers:
            etag = self.etag(call.resource or call.path)
            if etag is None:
                raise ValueError(
                    f"no ETag known for {call.resource}: read it first, or pass if_match"
                )
            headers["If-Match"] = etag
        body = call.json
        if call.lease is not None:
            job_id, token, secret = call.lease
            secret = secret or self._lease_secrets.get((job_id, token))
            if secret is not None:
                body = {**body, "secret": secret}
        content: bytes | None = None
        if body is not None or call.method in ("POST", "PATCH"):
            content = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        return self._http.build_request(
            call.method,
            call.path,
            params=call.params,
            headers=headers,
            content=content,
            timeout=httpx.USE_CLIENT_DEFAULT if call.timeout is None else call.timeout,
        )

    def _read(self, call: Call[R], response: httpx.Response) -> R:
        key = _key(call)
        content = response.content
        status = response.status_code
        if status == 304 and call.cacheable and key in self._etags:
            self._etags.move_to_end(key)
            content, status = self._etags[key][1], 200
        if status >= 400:
            body = _json(content)
            raise error_for(
                status,
                body,
                retry_after=response.headers.get("retry-after"),
                etag=response.headers.get("etag"),
            )
        if call.grants:
            pair = orjson.loads(content)
            self.token = str(pair["access_token"])
            self.refresh_token = pair.get("refresh_token")
        if call.credentials is not None:
            self._credentials = call.credentials
        if call.ends_session:
            self.token = self.refresh_token = self._credentials = None
        if call.new_password is not None and self._credentials is not None:
            self._credentials = (self._credentials[0], call.new_password)
        self._remember(call, response, content)
        if call.text:
            return call.read(status, content.decode())
        body = _json(content)
        if call.leases_granted:
            self._remember_leases(body)
        return call.read(status, body)

    def _remember_leases(self, body: Any) -> None:
        for item in calls.granted(body):
            lease = item["lease"]
            self._lease_secrets[(str(item["job"]["id"]), int(lease["token"]))] = lease["secret"]
        while len(self._lease_secrets) > LEASE_SECRETS:
            self._lease_secrets.popitem(last=False)

    def _remember(self, call: Call[Any], response: httpx.Response, content: bytes) -> None:
        if call.method == "DELETE":
            if call.resource is not None:
                self._etags.pop(call.resource, None)
            return
        etag = response.headers.get("etag")
        if etag is None or response.status_code not in (200, 201):
            return
        if call.cacheable:
            key = _key(call)
        elif call.resource is not None:
            key = call.resource
        elif response.status_code == 201 and "location" in response.headers:
            key = httpx.URL(response.headers["location"]).path
        else:
            return
        self._etags[key] = (etag, content)
        self._etags.move_to_end(key)
        while len(self._etags) > ETAG_CACHE_SIZE:
            self._etags.popitem(last=False)


def _key(call: Call[Any]) -> str:
    if not call.params:
        return call.path
    return call.path + "?" + "&".join(f"{k}={v}" for k, v in sorted(call.params.items()))


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return None


class _Endpoint(Generic[P, R]):
    """A call of `calls.py` as a method: blocking on `Client`, awaitable on `AsyncClient`."""

    def __init__(self, build: Callable[P, Call[R]]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, client: None, owner: type) -> _Endpoint[P, R]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[R]]: ...

    def __get__(self, client: _Calls | None, owner: type) -> Any:
        if client is None:
            return self
        build, send = self._build, client._send

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return send(build(*args, **kwargs))

        client.__dict__[self._name] = method  # bound once per client, then a plain attribute
        return method


class _Calls(_Session, abc.ABC):
    """Every call of the API, bound to the client's own way of sending."""

    @abc.abstractmethod
    def _send(self, call: Call[Any]) -> Any:
        """Send `call`: the blocking client returns its result, the async one an awaitable."""

    health = _Endpoint(calls.health)
    ready = _Endpoint(calls.ready)
    login = _Endpoint(calls.login)
    refresh = _Endpoint(calls.refresh)
    logout = _Endpoint(calls.logout)
    list_sessions = _Endpoint(calls.list_sessions)
    end_session = _Endpoint(calls.end_session)
    me = _Endpoint(calls.me)
    list_users = _Endpoint(calls.list_users)
    create_user = _Endpoint(calls.create_user)
    update_user = _Endpoint(calls.update_user)
    end_user_sessions = _Endpoint(calls.end_user_sessions)
    change_password = _Endpoint(calls.change_password)
    create_api_key = _Endpoint(calls.create_api_key)
    list_api_keys = _Endpoint(calls.list_api_keys)
    revoke_api_key = _Endpoint(calls.revoke_api_key)
    metrics = _Endpoint(calls.metrics)
    create_job = _Endpoint(calls.create_job)
    get_job = _Endpoint(calls.get_job)
    list_jobs = _Endpoint(calls.list_jobs)
    delete_job = _Endpoint(calls.delete_job)
    cancel_job = _Endpoint(calls.cancel_job)
    retry_job = _Endpoint(calls.retry_job)
    bulk = _Endpoint(calls.bulk)
    claim = _Endpoint(calls.claim)
    claim_jobs = _Endpoint(calls.claim_jobs)
    heartbeat_jobs = _Endpoint(calls.heartbeat_jobs)
    report = _Endpoint(calls.report)
    heartbeat = _Endpoint(calls.heartbeat)
    complete = _Endpoint(calls.complete)
    fail = _Endpoint(calls.fail)
    release = _Endpoint(calls.release)
    append_job_logs = _Endpoint(calls.append_job_logs)
    list_job_logs = _Endpoint(calls.list_job_logs)
    create_task = _Endpoint(calls.create_task)
    get_task = _Endpoint(calls.get_task)
    list_tasks = _Endpoint(calls.list_tasks)
    update_task = _Endpoint(calls.update_task)
    delete_task = _Endpoint(calls.delete_task)
    create_schedule = _Endpoint(calls.create_schedule)
    get_schedule = _Endpoint(calls.get_schedule)
    list_schedules = _Endpoint(calls.list_schedules)
    update_schedule = _Endpoint(calls.update_schedule)
    delete_schedule = _Endpoint(calls.delete_schedule)
    list_queues = _Endpoint(calls.list_queues)
    get_queue = _Endpoint(calls.get_queue)
    update_queue = _Endpoint(calls.update_queue)


class Client(_Calls):
    """The blocking client. `with Client(url) as c: c.login(user, password); c.get_job(id)`.

    With `api_key=` (or `ORCH_API_KEY` in the environment) it needs no login.
    """

    _http: httpx.Client

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, api_key=api_key)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[R]) -> R:
        flow = self._flow(call)
        request = next(flow)
        while True:
            response = self._http.send(request)
            try:
                request = flow.send(response)
            except StopIteration as done:
                result: R = done.value
                return result

    def subscribe(
        self, collections: Sequence[str] = DEFAULT_COLLECTIONS, *, since: int | None = None
    ) -> Subscription:
        """Change frames over the WebSocket as a blocking iterator (see `AsyncClient.subscribe`).

        `with client.subscribe(["jobs"]) as feed: for frame in feed: …`; `close()` ends it.
        """

        async def token(refresh: bool) -> str | None:
            if refresh and self._credentials is not None:
                self._send(calls.login(*self._credentials))  # on the feed's own thread
            return self.token or self.api_key

        return Subscription(self.ws_url, token, collections=collections, since=since)


class AsyncClient(_Calls):
    """The asyncio client. `async with AsyncClient(url) as c: await c.login(user, password)`.

    With `api_key=` (or `ORCH_API_KEY` in the environment) it needs no login.
    """

    _http: httpx.AsyncClient

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, api_key=api_key)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[R]) -> R:
        flow = self._flow(call)
        request = next(flow)
        while True:
            response = await self._http.send(request)
            try:
                request = flow.send(response)
            except StopIteration as done:
                result: R = done.value
                return result

    def subscribe(
        self, collections: Sequence[str] = DEFAULT_COLLECTIONS, *, since: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Change frames over the WebSocket, in revision order, resuming after reconnects.

        Yields `{"type": "change", "revision", "collection", "op", "id", "data"}` frames, and
        `{"type": "resync_required", "revision"}` when the server no longer has the changes
        since the last one seen (refetch, then carry on: the iterator continues from there).
        """
        token: TokenSource = self._token
        return subscribe(self.ws_url, token, collections=collections, since=since)

    async def _token(self, refresh: bool) -> str | None:
        if refresh and self._credentials is not None:
            await self._send(calls.login(*self._credentials))
        return self.token or self.api_key
