"""Liveness, readiness and metrics of a worker process: what the kubelet's probes and Prometheus ask.

Every role answers on its status port (`hexrl.api.workerconfig`):

    GET /healthz   200 {"ok": true} while the process serves (liveness)
    GET /readyz    200 {"ready": true} once the role can do its work, else 503 {"ready": false, "reason": ...}
    GET /metrics   the role's Prometheus registry

The coordinator and the weight service (a rollout worker's relay) add these routes to their own apps
(`add_status_routes`); a role without a server of its own on that port — every trainer rank, a rollout
worker that does not relay — runs a `StatusServer` there. `Readiness` is set by the work thread and read
by the HTTP handler (a single attribute: no lock needed).
"""

from __future__ import annotations

from aiohttp import web

from hexrl.api.workerconfig import HEALTH_PATH, METRICS_PATH, READY_PATH
from hexrl_workers.httpcommon import ThreadedService, start_site, stop_site
from hexrl_workers.metrics import Metrics


class Readiness:
    """Whether a role can do its work now, and if not, why (one sentence, shown by /readyz)."""

    def __init__(self, reason: str | None = "starting") -> None:
        self.reason: str | None = reason
        """None when ready; else what the role is waiting for."""

    @property
    def ready(self) -> bool:
        return self.reason is None

    def set_ready(self) -> None:
        self.reason = None

    def waiting(self, reason: str) -> None:
        """Not ready: `reason` says what the role waits for (e.g. "waiting for the coordinator")."""
        self.reason = reason


def readiness_response(readiness: Readiness | None) -> web.Response:
    """The /readyz answer: 200 when ready (or when no readiness is tracked), 503 with the reason otherwise."""
    if readiness is None or readiness.ready:
        return web.json_response({"ready": True})
    return web.json_response({"ready": False, "reason": readiness.reason}, status=503)


def add_status_routes(app: web.Application, metrics: Metrics, readiness: Readiness | None) -> None:
    """/healthz, /readyz and /metrics on `app` (the paths the auth middleware leaves open)."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def ready(request: web.Request) -> web.Response:
        return readiness_response(readiness)

    async def metrics_handler(request: web.Request) -> web.Response:
        body, ctype = metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(READY_PATH, ready)
    app.router.add_get(METRICS_PATH, metrics_handler)


class StatusServer:
    """An aiohttp app serving only /healthz, /readyz and /metrics of one role."""

    def __init__(self, metrics: Metrics, readiness: Readiness) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        add_status_routes(app, self.metrics, self.readiness)
        return app

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> int:
        """Serve on the running loop; returns the bound port (`port` 0 = any free one)."""
        self.runner, self.port = await start_site(self.app(), host, port)
        return self.port

    async def stop(self) -> None:
        await stop_site(self.runner)


class ThreadedStatusServer(ThreadedService):
    """A `StatusServer` on its own thread (the work of the role keeps the main thread)."""

    thread_name = "status"

    def __init__(self, metrics: Metrics, readiness: Readiness, host: str = "0.0.0.0", port: int = 0) -> None:
        super().__init__(StatusServer(metrics, readiness), host=host, port=port)
