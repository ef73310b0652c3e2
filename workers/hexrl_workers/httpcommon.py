"""HTTP plumbing shared by the coordinator, the weight service and the relays (aiohttp).

- `auth_middleware(credentials)`: every path except `/healthz`, `/readyz` and `/metrics` needs `Authorization:
  Bearer <token>` of a role (`hexrl.api.jobtokens`: trainer, rollout, operator) that `ACCESS` allows on that
  route: 401 for no or an unknown token, 403 with a sentence for a known token of another role (or a route
  `ACCESS` does not list). The one table of who may call what; tokens are checked against their SHA-256
  digests (`Credentials`), so a service never holds another role's token.
- `error_middleware`: a malformed body, an unknown wire version or a refused request becomes a 4xx with
  `{"error": ..., "field": ...}`; an unexpected exception becomes a 500 with the same shape. The service
  keeps serving either way.
- `read_body(request, limit)`: the body, refused with 413 before reading when its Content-Length is over
  `limit`, or as soon as the bytes read pass it (chunked); read into one buffer, never more than `limit`.
- `parse(model, request, limit)`: body → pydantic model in one pass over that buffer (no intermediate
  JSON tree), raising `HTTPProblem` that names the field.
- `start_site(app, host, port)` / `stop_site(runner)`: serve an application on the running loop and stop
  serving it — the one way every service here binds its port.
- `ThreadedService`: any of these services on its own thread and event loop (local runner, relays, tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from hexrl.api import jobtokens
from hexrl_workers.protocol import WIRE_VERSION

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


class HTTPProblem(Exception):
    """An error answer: status, message, optional field and headers (e.g. Retry-After)."""

    def __init__(self, status: int, error: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.field, self.headers = status, error, field, headers


def problem(status: int, error: str, field: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "field": field}, status=status, headers=headers)


TRAINER, ROLLOUT, OPERATOR = jobtokens.TOKEN_ROLES
ACCESS: dict[tuple[str, str], frozenset[str]] = {
    # coordinator (coordinator/server.py)
    ("POST", "/v1/work"): frozenset({ROLLOUT}),  # pull prompts
    ("POST", "/v1/trajectories"): frozenset({ROLLOUT}),  # hand in samples and partials
    ("POST", "/v1/batch"): frozenset({TRAINER}),  # pull a training batch
    ("POST", "/v1/version"): frozenset({TRAINER}),  # announce a new policy version
    ("GET", "/v1/version"): frozenset({TRAINER, ROLLOUT, OPERATOR}),  # read-only: version, epoch, done
    ("GET", "/v1/progress"): frozenset({OPERATOR}),  # the operator's poll, `hexrl run`'s live line
    ("GET", "/v1/staleness"): frozenset({OPERATOR}),
    ("PUT", "/v1/staleness"): frozenset({OPERATOR}),  # change η at run time
    ("GET", "/v1/state"): frozenset({TRAINER, OPERATOR}),  # read-only: the coordinator's part of a checkpoint
    ("POST", "/v1/restore"): frozenset({TRAINER}),  # resume from a checkpoint
    # weight origin (trainer rank 0) and relays (rollout pods) (weights/server.py)
    ("GET", "/v1/weights/latest"): frozenset({ROLLOUT}),
    ("GET", "/v1/weights/{v}/manifest"): frozenset({ROLLOUT}),
    ("GET", "/v1/weights/{v}/blob"): frozenset({ROLLOUT}),
    ("POST", "/v1/weights/{v}/holders"): frozenset({ROLLOUT}),  # a relay holds / released a version
}
"""(method, route) → the roles whose token may call it. A /v1/ route missing here is refused to everyone
(403), so a new endpoint is closed until it is given its roles."""


@dataclass(frozen=True)
class Credentials:
    """What a service checks bearer tokens against: role → SHA-256 hex of the role's token."""

    digests: Mapping[str, str]
    """From `HEXRL_TOKEN_DIGESTS` (the job's Secret, key `digests`) or `of_tokens` (local runs, tests)."""

    @classmethod
    def of_tokens(cls, tokens: Mapping[str, str]) -> Credentials:
        return cls({role: jobtokens.token_digest(t) for role, t in tokens.items()})

    @classmethod
    def parse(cls, text: str, source: str = "HEXRL_TOKEN_DIGESTS") -> Credentials:
        """From `encode_digests`' text; `jobtokens.TokenError` naming the bad entry otherwise."""
        return cls(jobtokens.parse_digests(text, source))

    def encode(self) -> str:
        return ",".join(f"{role}={d}" for role, d in self.digests.items())

    def role_of(self, authorization: str) -> str | None:
        """The role whose token `Authorization: Bearer <token>` carries; None for no or an unknown token.
        Every digest is compared (constant time, no early exit), so the answer's timing tells nothing."""
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            return None
        got = hashlib.sha256(token.strip().encode()).hexdigest().encode()
        found = None
        for role, digest in self.digests.items():
            if hmac.compare_digest(got, digest.encode()):
                found = role
        return found


def route_key(request: web.Request) -> tuple[str, str]:
    """(method, route pattern) of a request, the key of `ACCESS` ("/v1/weights/{v}/blob", not "/v1/weights/3/blob")."""
    resource = request.match_info.route.resource
    return request.method, resource.canonical if resource is not None else request.path


def auth_middleware(credentials: Credentials | None):  # type: ignore[no-untyped-def]
    """Enforce `ACCESS` (None: no authentication, for tests of other behaviour only; pods refuse to start
    without credentials, see `hexrl_workers.__main__`)."""

    @web.middleware
    async def mw(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if credentials is None or request.path.startswith(OPEN_PATHS):
            return await handler(request)
        role = credentials.role_of(request.headers.get("Authorization", ""))
        if role is None:
            return problem(401, "missing or unknown bearer token for this job", "Authorization")
        if request.match_info.route.resource is None:  # no such route: let the router answer 404/405
            return await handler(request)
        method, route = route_key(request)
        allowed = ACCESS.get((method if method != "HEAD" else "GET", route), frozenset())
        if role not in allowed:
            who = ", ".join(sorted(allowed)) or "no role"
            return problem(403, f"the {role} token may not call {method} {route} (allowed: {who})", "Authorization")
        return await handler(request)

    return mw


def error_middleware(on_reject=None):  # type: ignore[no-untyped-def]
    """Turn exceptions into JSON 4xx/5xx; `on_reject(reason)` counts them (metrics)."""

    @web.middleware
    async def mw(request: web.Request, handler):  # type: ignore[no-untyped-def]
        try:
            return await handler(request)
        except HTTPProblem as exc:
            if on_reject:
                on_reject(exc.field or str(exc.status))
            return problem(exc.status, exc.error, exc.field, exc.headers)
        except web.HTTPException:
            raise
        except RecursionError:  # json.loads on a deeply nested document: the client's problem, not ours
            if on_reject:
                on_reject("body")
            return problem(400, "request body is nested too deeply to parse", "body")
        except Exception as exc:  # the service must keep serving; the log has the traceback
            log.exception("unhandled error on %s %s", request.method, request.path)
            if on_reject:
                on_reject("internal")
            return problem(500, f"internal error: {type(exc).__name__}: {exc}")

    return mw


def validation_problem(exc: ValidationError) -> HTTPProblem:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"])
    if "wireVersion" in msg or loc.endswith("wireVersion") or loc.endswith("wire_version"):
        return HTTPProblem(400, msg.removeprefix("Value error, "), "wireVersion")
    return HTTPProblem(422, f"{loc or 'body'}: {msg.removeprefix('Value error, ')}", loc or None)


READ_CHUNK = 1 << 16
"""Bytes read from the socket at a time while checking a body against its limit."""
WIRE_VERSION_PROBE = 4096
"""Bytes at the start of a refused body searched for its wireVersion (never the whole body)."""


async def read_body(request: web.Request, limit: int) -> bytearray:
    """The request's body, at most `limit` bytes: 413 with a sentence before reading a larger declared
    Content-Length, or once a chunked body passes the limit (what was read is dropped with it)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(request, f"{declared:,} bytes", limit)
    buf = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise _too_large(request, f"more than {limit:,} bytes", limit)
    return buf


def _too_large(request: web.Request, size: str, limit: int) -> HTTPProblem:
    return HTTPProblem(413, f"the body of {request.method} {request.path} is {size}, over this job's limit of "
                            f"{limit:,} bytes (sized from the RLJob spec: group size, maxNewTokens, prompt length); "
                            "send fewer samples per request", "body")


async def parse(model: type[M], request: web.Request, limit: int) -> M:
    """The body as `model` (see `read_body` for `limit`): pydantic parses the bytes straight into the
    model, so no JSON tree of Python objects is built first."""
    body = await read_body(request, limit)
    if not body:
        raise HTTPProblem(400, f"empty body; expected a JSON {model.__name__}", None)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise HTTPProblem(400, f"body is not valid JSON: {exc.errors()[0]['msg']}", None) from exc
        # A peer from a different release: say so before complaining about fields it may not know.
        version = _wire_version(body)
        if version is not None and version != WIRE_VERSION:
            raise HTTPProblem(
                400, f"unsupported wireVersion {version!r}; this service speaks {WIRE_VERSION}", "wireVersion",
            ) from exc
        raise validation_problem(exc) from exc


_WIRE_VERSION = re.compile(rb'"wireVersion"\s*:\s*(-?\d+|"[^"]{0,32}")')


def _wire_version(body: bytes | bytearray) -> Any:
    """The top-level wireVersion of a refused body, looked for in its first bytes only (our peers write it
    first; parsing a large body a second time just to find it would double the cost of a refusal)."""
    m = _WIRE_VERSION.search(bytes(body[:WIRE_VERSION_PROBE]))
    if m is None:
        return None
    try:
        return json.loads(m.group(1))
    except ValueError:
        return None


def json_response(model: BaseModel | dict[str, Any], status: int = 200) -> web.Response:
    if isinstance(model, BaseModel):
        return web.Response(
            body=model.model_dump_json(by_alias=True), status=status, content_type="application/json"
        )
    return web.json_response(model, status=status)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on the running loop at `host:port` (`port` 0 = any free one): the runner to hand to
    `stop_site` and the bound port. No access log (the services count their requests in metrics);
    `reuse_address`, so a restarted service binds its port again while the old socket is in TIME_WAIT.
    If binding fails, what was set up is cleaned up before the error propagates."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


async def stop_site(runner: web.AppRunner | None) -> None:
    """Stop serving what `start_site` started (None: it never started; nothing to do)."""
    if runner is not None:
        await runner.cleanup()


class ThreadedService:
    """An aiohttp service (with `async start(host, port) -> port` and `async stop()`) on a background thread.

    The service's handlers run on the thread's own event loop, so synchronous callers (the local runner,
    a rollout worker's relay, tests and benchmarks) use it through `call` / `call_soon`.
    """

    thread_name = "service"

    def __init__(self, server: Any, host: str = "127.0.0.1", port: int = 0,
                 advertise_host: str = "127.0.0.1") -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.advertise_host = advertise_host
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port), daemon=True, name=self.thread_name)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"{self.thread_name} did not start within 30 s")

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self.loop)
        self.port = self.loop.run_until_complete(self.server.start(host, port))
        self._ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://{self.advertise_host}:{self.port}"

    def call(self, coro, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        """Run a coroutine on the service's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.call(self.server.stop(), timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
