"""Process start-up of `hexrl operator`: prepare a fresh cluster (developer path, `bootstrap`), check it,
start metrics and health servers, run kopf."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf
from prometheus_client import start_http_server

from hexrl.api.models import GROUP, VERSION
from hexrl.k8s import bootstrap
from hexrl.k8s.handlers import Operator, build_registry
from hexrl.k8s.kubeapi import ApiError, KubeApi
from hexrl.k8s.planning import PlanFn, ReplanFn
from hexrl.k8s.settings import OperatorSettings

log = logging.getLogger("hexrl.operator")


class OperatorStartError(RuntimeError):
    """The operator cannot start; the message says what to fix."""


def connect(settings: OperatorSettings, kubeconfig: str | None, prepare: bool = False) -> KubeApi:
    """A client for the cluster, after checking that it answers and that the RLJob CRD is installed
    (with `prepare`, first creating what a fresh cluster lacks: see `bootstrap`)."""
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # kopf's login reads the same file
    try:
        api = KubeApi.from_kubeconfig(kubeconfig, settings.identity.field_manager)
    except Exception as exc:
        raise OperatorStartError(
            f"cannot load Kubernetes credentials ({exc}); pass --kubeconfig FILE or run inside a pod"
        ) from None
    host = api.api_client.configuration.host
    if prepare:
        _prepare(api, settings, host)
    _check_crd(api, host)
    return api


def _prepare(api: KubeApi, settings: OperatorSettings, host: str) -> None:
    try:
        bootstrap.prepare(api, settings)
    except bootstrap.PrepareError as exc:
        raise OperatorStartError(str(exc)) from None
    except ApiError as exc:
        raise OperatorStartError(f"the API server at {host} answered {exc} while preparing the cluster") from None
    except Exception as exc:
        raise OperatorStartError(f"cannot reach the API server at {host}: {exc}") from None


def _check_crd(api: KubeApi, host: str) -> None:
    try:
        api._call("GET", f"/apis/{GROUP}/{VERSION}")
    except ApiError as exc:
        if exc.status == 404:
            raise OperatorStartError(
                f"the RLJob CRD ({GROUP}/{VERSION}) is not installed on {host}; "
                "apply crds/rljobs.hexrl.dev.yaml (or install the Helm chart, or run `hexrl operator --prepare` "
                "with an admin kubeconfig) first"
            ) from None
        if exc.status in (401, 403):
            raise OperatorStartError(f"the API server at {host} refused our credentials: {exc.message}") from None
        raise OperatorStartError(f"the API server at {host} answered {exc}") from None
    except Exception as exc:
        raise OperatorStartError(f"cannot reach the API server at {host}: {exc}") from None


class _Health(BaseHTTPRequestHandler):
    op: Operator
    ready_flag: threading.Event
    started: float

    def do_GET(self) -> None:
        queue = self.op.queue
        if self.path.startswith("/healthz"):
            ok = (queue is not None and queue.alive) or time.monotonic() - self.started < 120
        elif self.path.startswith("/readyz"):
            ok = self.ready_flag.is_set() and queue is not None and queue.alive
        else:
            self.send_error(404)
            return
        body = b"ok\n" if ok else b"not ready\n"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        pass


def start_health(op: Operator, ready_flag: threading.Event, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("Health", (_Health,), {"op": op, "ready_flag": ready_flag, "started": time.monotonic()})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise OperatorStartError(f"cannot serve health checks on {host}:{port} ({exc}); pick another --health-port") from None
    threading.Thread(target=server.serve_forever, name="hexrl-health", daemon=True).start()
    return server


def check_key(op: Operator) -> None:
    """Read (or create) the operator key at start-up, so a missing permission is one clear message."""
    assert op.reconciler is not None
    s = op.settings
    try:
        op.reconciler.operator_key()
    except ApiError as exc:
        raise OperatorStartError(
            f"cannot read or create the operator key Secret {s.operator_namespace()}/{s.identity.key_secret} "
            f"({exc.status} {exc.reason}: {exc.message}); apply manifests/operator/rbac.yaml (its Role grants get "
            "on exactly that Secret), create the namespace (`hexrl operator --prepare` does, with an admin "
            "kubeconfig), or set HEXRL_OPERATOR_KEY_NAMESPACE to the namespace the operator runs in"
        ) from None


def run(
    settings: OperatorSettings, kubeconfig: str | None = None, stop_flag: threading.Event | None = None,
    prepare: bool = False, planner: PlanFn | None = None, replanner: ReplanFn | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or `stop_flag`); with `prepare`, first create what the cluster lacks.
    `planner`/`replanner` replace `hexrl.sched.plan`/`replan` (the benchmark's fresh-solve reference)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    api = connect(settings, kubeconfig, prepare)
    op = Operator(settings, api, planner=planner, replanner=replanner)
    check_key(op)
    registry = build_registry(op)
    ready = threading.Event()
    if settings.endpoints.metrics_port:
        try:
            start_http_server(settings.endpoints.metrics_port, addr=settings.endpoints.health_host)
        except OSError as exc:
            raise OperatorStartError(
                f"cannot serve metrics on {settings.endpoints.health_host}:{settings.endpoints.metrics_port} ({exc}); "
                "pick another --metrics-port"
            ) from None
    if settings.endpoints.health_port:
        start_health(op, ready, settings.endpoints.health_host, settings.endpoints.health_port)
    priority = settings.identity.priority or random.randint(2, 2**30)
    scope = f"namespace {settings.watching.namespace}" if settings.watching.namespace else "all namespaces"
    log.info("hexrl operator starting: %s, API %s, peering %s", scope, api.api_client.configuration.host,
             "off" if settings.identity.standalone else f"{settings.identity.peering or 'default'} (priority {priority})")
    kopf.run(
        registry=registry,
        standalone=settings.identity.standalone,
        priority=priority,
        peering_name=None if settings.identity.standalone else settings.identity.peering,
        clusterwide=settings.watching.namespace is None,
        namespaces=[settings.watching.namespace] if settings.watching.namespace else (),
        ready_flag=ready,
        stop_flag=stop_flag,
    )
