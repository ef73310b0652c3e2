"""HTTP plumbing shared by the coordinator, the weight service and the relays (aiohttp).

- `auth_middleware(token)`: every path except `/healthz`, `/readyz` and `/metrics` needs `Authorization: Bearer
  <per-job token>`; otherwise 401 with a JSON reason. Comparison is constant-time.
- `error_middleware`: a malformed body, an unknown wire version or a refused request becomes a 4xx with
  `{"error": ..., "field": ...}`; an unexpected exception becomes a 500 with the same shape. The service
  keeps serving either way.
- `parse(model, request)`: body → pydantic model, raising `BadRequest` that names the field.
- `ThreadedService`: any of these services on its own thread and event loop (local runner, relays, tests).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from hexrl_workers.protocol import WIRE_VERSION

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


class HTTPProblem(Exception):
    """An error answer: status, message and optional field."""

    def __init__(self, status: int, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.field = status, error, field


def problem(status: int, error: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": error, "field": field}, status=status)


def auth_middleware(token: str | None):  # type: ignore[no-untyped-def]
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def mw(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if expected is not None and not request.path.startswith(OPEN_PATHS):
            got = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(got, expected):
                return problem(401, "missing or wrong bearer token for this job", "Authorization")
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
            return problem(exc.status, exc.error, exc.field)
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


async def parse(model: type[M], request: web.Request) -> M:
    body = await request.read()
    if not body:
        raise HTTPProblem(400, f"empty body; expected a JSON {model.__name__}", None)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise HTTPProblem(400, f"body is not valid JSON: {exc.errors()[0]['msg']}", None) from exc
        # A peer from a different release: say so before complaining about fields it may not know.
        try:
            raw = json.loads(body)
        except ValueError:
            raw = None
        if isinstance(raw, dict) and raw.get("wireVersion", WIRE_VERSION) != WIRE_VERSION:
            raise HTTPProblem(
                400,
                f"unsupported wireVersion {raw.get('wireVersion')!r}; this service speaks {WIRE_VERSION}",
                "wireVersion",
            ) from exc
        raise validation_problem(exc) from exc


def json_response(model: BaseModel | dict[str, Any], status: int = 200) -> web.Response:
    if isinstance(model, BaseModel):
        return web.Response(
            body=model.model_dump_json(by_alias=True), status=status, content_type="application/json"
        )
    return web.json_response(model, status=status)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


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
