"""`DevCluster`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1.

This is our own small equivalent of `kwokctl --runtime=binary`, around the same binaries: with no internet
access kwokctl would try to download its binaries, and owning the ~200 lines that start five processes
lets us pick ports, report a port in use, and stop everything for certain. Start order and readiness:

1. etcd (plain HTTP on 127.0.0.1; `--unsafe-no-fsync` because the data is thrown away) — wait for /health;
2. kube-apiserver (TLS, client certificates from a per-cluster CA, `--authorization-mode=Node,RBAC`,
   service-account tokens signed by a per-cluster key) — wait for /readyz;
3. kube-controller-manager and kube-scheduler with their own identities (RBAC bootstrap roles apply), and
   kwok managing nodes annotated `kwok.x-k8s.io/node=fake` — wait until the `default` ServiceAccount
   exists (the controller manager works) and both report /healthz.

All state lives in the work folder (default `~/.cache/hexrl/clusters/<name>`): certificates, kubeconfigs,
etcd data, logs and `state.json` with the PIDs and ports, which is what `down` (from any process) uses.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hexrl.devcluster import inventory as inv
from hexrl.devcluster import procs
from hexrl.devcluster.build import Builder, Progress, stderr_progress
from hexrl.devcluster.errors import DevClusterError
from hexrl.devcluster.pki import Pki

ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
"""Start order; `down` stops in reverse."""
START_ATTEMPTS = 2
"""Start-ups tried when a component loses its port to another program between our probe and its bind."""


@dataclass(frozen=True)
class ClusterSettings:
    """How the local control plane runs."""

    apiserver_port: int | None = None
    """kube-apiserver's secure port on 127.0.0.1; None picks a free one (default). A taken port is an error."""
    start_timeout_seconds: float = 120.0
    """Upper bound for each component to become ready; a warm start takes ~15 s on 2 cores."""
    service_cidr: str = "10.96.0.0/12"
    """ClusterIP range for Services (never routed anywhere; only allocated)."""
    pod_cidr: str = "10.244.0.0/16"
    """Range kwok assigns pod IPs from (64k pods; kwok's default /24 runs out at 254)."""
    node_lease_seconds: int = 40
    """Node lease duration kwok maintains; the node lifecycle controller marks a node NotReady after it."""
    log_verbosity: int = 1
    """klog `-v` of every component (logs are in `<workdir>/logs/`)."""


@dataclass
class State:
    """What `state.json` records about a running cluster."""

    name: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    owner_pid: int = 0
    """The process that ran `up` (tests use it to avoid sharing a cluster with a concurrent session)."""


class DevCluster:
    """A local control plane with simulated GPU nodes. See the module docstring."""

    def __init__(
        self,
        name: str = "hexrl",
        workdir: str | Path | None = None,
        *,
        settings: ClusterSettings | None = None,
        builder: Builder | None = None,
        progress: Progress = stderr_progress,
    ) -> None:
        if not name or not name.replace("-", "").isalnum():
            raise DevClusterError(f"cluster name {name!r} is not valid", "use letters, digits and '-'")
        self.name = name
        self.builder = builder or Builder(progress=progress)
        self.workdir = Path(workdir) if workdir else self.builder.settings.cache_dir / "clusters" / name
        self.settings = settings or ClusterSettings()
        self.progress = progress
        self._state_file = self.workdir / "state.json"

    # ------------------------------------------------------------------------------------------ public

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client certificate in group system:masters); usable by kubectl, kubernetes, kopf."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{procs.HOST}:{self._load_state().ports['kube-apiserver']}"

    def owner_pid(self) -> int | None:
        """PID of the live process that started this cluster, or None."""
        state = self._read_state()
        if state is None or not state.owner_pid:
            return None
        return state.owner_pid if procs.alive(state.owner_pid) else None

    def is_running(self) -> bool:
        state = self._read_state()
        return state is not None and all(
            procs.alive(state.pids.get(c, -1), c) for c in ORDER
        ) and self._healthy("/readyz", state)

    def up(self, inventory: str | Path | dict[str, Any] | None = None) -> DevCluster:
        """Start the cluster (building binaries first if needed); idempotent when it already runs."""
        if inventory is not None:
            inv.parse(inventory)  # a bad file fails before anything starts
        if self.is_running():
            self.progress(f"cluster {self.name!r} is already running ({self.kubeconfig})")
        else:
            if self.settings.apiserver_port:
                procs.require_free(self.settings.apiserver_port, "kube-apiserver")
            if self._state_file.exists():
                self.down(quiet=True)  # leftovers of a crashed run
            started = time.monotonic()
            binaries = {c: str(self.builder.path(c)) for c in (*ORDER, "kubectl")}
            stages = self.builder.kwok_stages()
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    self._start(binaries, stages)
                    break
                except DevClusterError as exc:
                    self.down(quiet=True, keep_logs=True)
                    if not exc.port_conflict or attempt == START_ATTEMPTS:
                        raise
                    self.progress(f"{exc.problem.splitlines()[0]} (a port was taken); starting again on new ports")
                except BaseException:
                    self.down(quiet=True, keep_logs=True)
                    raise
            self.progress(f"cluster {self.name!r} up in {time.monotonic() - started:.1f}s; kubeconfig: {self.kubeconfig}")
        if inventory is not None:
            self.apply_inventory(inventory)
        return self

    def down(self, quiet: bool = False, keep_logs: bool = False) -> None:
        """Stop every process, check their ports are free, and remove the work folder."""
        state = self._read_state()
        if state is None and not self.workdir.exists():
            if not quiet:
                self.progress(f"cluster {self.name!r} is not running")
            return
        if state is not None:
            for component in reversed(ORDER):
                pid = state.pids.get(component)
                if pid:
                    procs.stop(pid, marker=component)
            busy = procs.wait_ports_closed(list(state.ports.values()))
            if busy:
                raise DevClusterError(
                    f"ports {busy} of cluster {self.name!r} are still open after stopping its processes",
                    "see `ss -ltnp` for who holds them",
                )
        logs = self.workdir / "logs"
        if keep_logs and logs.is_dir() and any(logs.iterdir()):
            # Keep logs for the error message that follows; drop the rest (etcd data, keys).
            for p in self.workdir.iterdir():
                if p.name != "logs":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if not quiet:
            self.progress(f"cluster {self.name!r} is down")

    def status(self) -> dict[str, Any]:
        """Processes, ports, health and node count (for `hexrl cluster status`)."""
        state = self._read_state()
        if state is None:
            return {"name": self.name, "running": False, "workdir": str(self.workdir)}
        components = {
            c: {"pid": state.pids.get(c), "alive": procs.alive(state.pids.get(c, -1), c), "port": state.ports.get(c)}
            for c in ORDER
        }
        ready = self._healthy("/readyz", state)
        out: dict[str, Any] = {
            "name": self.name,
            "running": ready and all(v["alive"] for v in components.values()),
            "server": f"https://{procs.HOST}:{state.ports['kube-apiserver']}",
            "kubeconfig": str(self.kubeconfig),
            "workdir": str(self.workdir),
            "components": components,
        }
        if ready:
            nodes = self.api("GET", "/api/v1/nodes").get("items", [])
            out["nodes"] = len(nodes)
            out["gpus"] = sum(int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", 0)) for n in nodes)
        return out

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this cluster; `check` raises with kubectl's stderr."""
        kubectl = self._load_state().binaries.get("kubectl") or str(self.builder.path("kubectl"))
        cmd = [kubectl, f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise DevClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply_inventory(self, source: str | Path | dict[str, Any], prune: bool = False) -> list[str]:
        """Create or update one Node per inventory node (`<pool>-<i>`); returns their names.

        `prune` also deletes simulated nodes (label `type=kwok`) that the inventory no longer lists.
        Node status (capacity, allocatable) is set on create and patched through the status
        subresource on update, so changing `gpusPerNode` takes effect on existing nodes.
        """
        cluster = inv.parse(source)
        names = []
        for node in inv.node_manifests(cluster):
            name = node["metadata"]["name"]
            names.append(name)
            code, _ = self._request("POST", "/api/v1/nodes", node, ok=(201, 409))
            if code == 409:
                patch = {"metadata": {"labels": node["metadata"]["labels"], "annotations": node["metadata"]["annotations"]}}
                self.api("PATCH", f"/api/v1/nodes/{name}", patch)
            self.api("PATCH", f"/api/v1/nodes/{name}/status", {"status": node["status"]})
        if prune:
            for item in self.api("GET", "/api/v1/nodes?labelSelector=type%3Dkwok").get("items", []):
                if item["metadata"]["name"] not in names:
                    self.api("DELETE", f"/api/v1/nodes/{item['metadata']['name']}")
        self.wait_nodes_ready(names)
        self.progress(f"{len(names)} simulated GPU nodes in {len(cluster.pools)} pools are Ready")
        return names

    def wait_nodes_ready(self, names: list[str], timeout: float | None = None) -> None:
        """Wait until kwok reports every node in `names` Ready."""
        deadline = time.monotonic() + (timeout or self.settings.start_timeout_seconds)
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for item in self.api("GET", "/api/v1/nodes").get("items", []):
                conds = {c["type"]: c["status"] for c in item.get("status", {}).get("conditions", [])}
                if conds.get("Ready") == "True":
                    pending.discard(item["metadata"]["name"])
            if pending:
                time.sleep(0.5)
        if pending:
            raise DevClusterError(
                f"nodes {sorted(pending)[:5]} did not become Ready",
                f"see {self.workdir / 'logs' / 'kwok.log'}",
            )

    # --------------------------------------------------------------------------------------- REST calls

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JSON call to the API server as admin (PATCH bodies are merge patches)."""
        return self._request(method, path, body)[1]

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, ok: tuple[int, ...] = (200, 201, 202)
    ) -> tuple[int, dict[str, Any]]:
        state = self._load_state()
        data = json.dumps(body).encode() if body is not None else None
        ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
        req = urllib.request.Request(
            f"https://{procs.HOST}:{state.ports['kube-apiserver']}{path}",
            data=data,
            method=method,
            headers={"Content-Type": ctype, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            payload = e.read()
            if e.code in ok:
                return e.code, json.loads(payload or b"{}")
            raise DevClusterError(f"{method} {path} → HTTP {e.code}: {payload.decode(errors='replace')[:500]}") from None

    def _ssl(self) -> ssl.SSLContext:
        pki = self.workdir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def _healthy(self, path: str, state: State, component: str = "kube-apiserver") -> bool:
        port = state.ports.get(component)
        if not port:
            return False
        ctx = self._ssl() if component == "kube-apiserver" else ssl._create_unverified_context()
        try:
            with urllib.request.urlopen(f"https://{procs.HOST}:{port}{path}", context=ctx, timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    # ------------------------------------------------------------------------------------------ startup

    def _start(self, binaries: dict[str, str], stages: Path) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = self._pick_ports()
        state = State(name=self.name, ports=ports, binaries=binaries, started_at=time.time(), owner_pid=os.getpid())
        self._write_state(state)
        self._pki()
        self._write_kubeconfigs(ports["kube-apiserver"])
        started: dict[str, subprocess.Popen[bytes]] = {}
        for component in ORDER:
            cmd = [binaries[component], *self._args(component, ports, stages)]
            # kwok also loads ~/.kwok/kwok.yaml when it exists; a private HOME keeps a user's kwokctl
            # configuration out of our cluster.
            env = {"HOME": str(self.workdir)} if component == "kwok" else None
            proc = procs.start(cmd, self.workdir / "logs" / f"{component}.log", cwd=self.workdir, env=env)
            started[component] = proc
            state.pids[component] = proc.pid
            self._write_state(state)
            if component == "etcd":
                self._wait(component, lambda: self._etcd_healthy(ports["etcd"]), proc)
            elif component == "kube-apiserver":
                self._wait(component, lambda: self._healthy("/readyz", state), proc)
        for component in ("kube-controller-manager", "kube-scheduler"):
            self._wait(component, lambda c=component: self._healthy("/healthz", state, c), started[component])
        self._wait("kwok", lambda: procs.port_open(ports["kwok"]), started["kwok"])
        # The controller manager is really working once it has created the default ServiceAccount
        # (pods cannot be admitted in a namespace before that).
        self._wait(
            "kube-controller-manager",
            lambda: self._request("GET", "/api/v1/namespaces/default/serviceaccounts/default", ok=(200, 404))[0] == 200,
            started["kube-controller-manager"],
        )

    def _pick_ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        if self.settings.apiserver_port:
            procs.require_free(self.settings.apiserver_port, "kube-apiserver")
            ports["kube-apiserver"] = self.settings.apiserver_port
        for key in ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
            while key not in ports:
                p = procs.free_port()
                if p not in ports.values():
                    ports[key] = p
        return ports

    def _pki(self) -> Pki:
        pki = Pki(self.workdir / "pki")
        pki.issue("apiserver", "kube-apiserver", server=True)
        pki.issue("admin", "hexrl-admin", org="system:masters")
        pki.issue("kube-scheduler", "system:kube-scheduler")
        pki.issue("kube-controller-manager", "system:kube-controller-manager")
        pki.issue("kwok", "hexrl-kwok", org="system:masters", server=True)
        pki.service_account_key()
        return pki

    def _kubeconfig_for(self, identity: str, port: int) -> dict[str, Any]:
        import base64

        pki = self.workdir / "pki"

        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": self.name, "cluster": {"server": f"https://{procs.HOST}:{port}", "certificate-authority-data": b64(pki / "ca.crt")}}
            ],
            "users": [
                {
                    "name": identity,
                    "user": {
                        "client-certificate-data": b64(pki / f"{identity}.crt"),
                        "client-key-data": b64(pki / f"{identity}.key"),
                    },
                }
            ],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": identity}}],
            "current-context": self.name,
        }

    def _write_kubeconfigs(self, port: int) -> None:
        for identity, path in (
            ("admin", self.kubeconfig),
            ("kube-scheduler", self.workdir / "kube-scheduler.kubeconfig"),
            ("kube-controller-manager", self.workdir / "kube-controller-manager.kubeconfig"),
            ("kwok", self.workdir / "kwok.kubeconfig"),
        ):
            path.write_text(yaml.safe_dump(self._kubeconfig_for(identity, port), sort_keys=False))
            path.chmod(0o600)

    def _args(self, component: str, ports: dict[str, int], stages: Path) -> list[str]:
        w, pki, h, s = self.workdir, self.workdir / "pki", procs.HOST, self.settings
        v = f"--v={s.log_verbosity}"
        if component == "etcd":
            peer = f"http://{h}:{ports['etcd-peer']}"
            return [
                "--name=hexrl", f"--data-dir={w / 'etcd'}",
                f"--listen-client-urls=http://{h}:{ports['etcd']}", f"--advertise-client-urls=http://{h}:{ports['etcd']}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=hexrl={peer}", "--initial-cluster-state=new",
                "--unsafe-no-fsync", "--quota-backend-bytes=4294967296", "--log-level=warn",
            ]  # fmt: skip
        if component == "kube-apiserver":
            return [
                f"--etcd-servers=http://{h}:{ports['etcd']}", f"--bind-address={h}", f"--advertise-address={h}",
                f"--secure-port={ports['kube-apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={s.service_cidr}",
                "--authorization-mode=Node,RBAC", "--allow-privileged=true",
                # Endpoints may not hold loopback addresses; there is no in-cluster network to reach anyway.
                "--endpoint-reconciler-type=none",
                "--profiling=false", v,
            ]  # fmt: skip
        if component == "kube-controller-manager":
            kc = w / "kube-controller-manager.kubeconfig"
            return [
                f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                f"--bind-address={h}", f"--secure-port={ports['kube-controller-manager']}",
                "--leader-elect=false", "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={s.service_cidr}", "--profiling=false", v,
            ]  # fmt: skip
        if component == "kube-scheduler":
            kc = w / "kube-scheduler.kubeconfig"
            return [
                f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                f"--bind-address={h}", f"--secure-port={ports['kube-scheduler']}",
                "--leader-elect=false", "--profiling=false", v,
            ]  # fmt: skip
        if component == "kwok":
            configs = [f"--config={p}" for p in sorted(stages.glob("*.yaml"))]
            return [
                f"--kubeconfig={w / 'kwok.kubeconfig'}", *configs,
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={inv.KWOK_ANNOTATION}={inv.KWOK_ANNOTATION_VALUE}",
                f"--cidr={s.pod_cidr}", f"--node-ip={h}", f"--node-port={ports['kwok']}",
                f"--server-address={h}:{ports['kwok']}",
                f"--tls-cert-file={pki / 'kwok.crt'}", f"--tls-private-key-file={pki / 'kwok.key'}",
                f"--node-lease-duration-seconds={s.node_lease_seconds}", v,
            ]  # fmt: skip
        raise ValueError(component)

    def _etcd_healthy(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://{procs.HOST}:{port}/health", timeout=3) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _wait(self, component: str, ready: Any, proc: subprocess.Popen[bytes]) -> None:
        log = self.workdir / "logs" / f"{component}.log"
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        while time.monotonic() < deadline:
            # Our own child: ask the kernel through waitpid, never /proc (which races with exec()).
            if proc.poll() is not None:
                text = log.read_text(errors="replace") if log.exists() else ""
                hint = f"full log: {log}"
                conflict = "address already in use" in text
                if conflict:
                    hint = "another program took one of the ports; run `hexrl cluster up` again. " + hint
                raise DevClusterError(
                    f"{component} exited during start-up:\n    {procs.tail(log)}", hint, port_conflict=conflict
                )
            if ready():
                return
            time.sleep(0.25)
        raise DevClusterError(
            f"{component} was not ready after {self.settings.start_timeout_seconds:.0f}s:\n    {procs.tail(log)}",
            f"full log: {log}; the machine may be overloaded — retry, or raise start_timeout_seconds",
        )

    # --------------------------------------------------------------------------------------------- state

    def _read_state(self) -> State | None:
        try:
            return State(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _load_state(self) -> State:
        state = self._read_state()
        if state is None:
            raise DevClusterError(f"cluster {self.name!r} is not running", f"start it with `hexrl cluster up --name {self.name}`")
        return state

    def _write_state(self, state: State) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, self._state_file)
