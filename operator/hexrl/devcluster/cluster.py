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

import contextlib
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
from hexrl.devcluster import procs, realnodes
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
    node_ip: str = ""
    """The machine's address, when the cluster has real nodes (empty: control plane on loopback only)."""
    real_nodes: list[dict[str, Any]] = field(default_factory=list)
    """Real kubelet nodes: name, index, pool, gpus, labels, dir, kubelet_port, healthz_port."""
    images: dict[str, str] = field(default_factory=dict)
    """Locally built images loaded into every real node: role (workers, operator, pause) → image name."""
    sysctls: dict[str, str] = field(default_factory=dict)
    """Kernel settings as they were before the real nodes started (restored by `down`)."""


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
        real_settings: realnodes.RealNodeSettings | None = None,
    ) -> None:
        if not name or not name.replace("-", "").isalnum():
            raise DevClusterError(f"cluster name {name!r} is not valid", "use letters, digits and '-'")
        self.name = name
        self.builder = builder or Builder(progress=progress)
        self.workdir = Path(workdir) if workdir else self.builder.settings.cache_dir / "clusters" / name
        self.settings = settings or ClusterSettings()
        self.real_settings = real_settings or realnodes.RealNodeSettings()
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
        """Start the cluster (building binaries first if needed); idempotent when it already runs.

        Pools with `real: true` become real kubelet nodes on this machine (`hexrl.devcluster.realnodes`),
        started after the control plane, with the locally built images loaded into their runtimes."""
        real: list[tuple[str, Any]] = []
        if inventory is not None:
            real = inv.real_nodes(inv.parse(inventory))  # a bad file fails before anything starts
        if real:
            realnodes.require_ready()
            self._refuse_second_real_cluster()
        if self.is_running():
            self.progress(f"cluster {self.name!r} is already running ({self.kubeconfig})")
        else:
            if self.settings.apiserver_port:
                procs.require_free(self.settings.apiserver_port, "kube-apiserver")
            if self._state_file.exists():
                self.down(quiet=True)  # leftovers of a crashed run
            started = time.monotonic()
            extra = ("kubelet", "kube-proxy", "coredns") if real else ()
            binaries = {c: str(self.builder.path(c)) for c in (*ORDER, "kubectl", *extra)}
            stages = self.builder.kwok_stages()
            node_ip = (self.real_settings.node_ip or realnodes.detect_node_ip()) if real else ""
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    self._start(binaries, stages, node_ip)
                    if real:
                        self._start_real_nodes(real, binaries, inventory)
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
            if state.real_nodes:
                self._stop_real_nodes(state)
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

    # ------------------------------------------------------------------------------------ real nodes

    def _refuse_second_real_cluster(self) -> None:
        """kube-proxy's iptables chains and the CNI host-port chains are host-wide: one cluster with real
        nodes per machine at a time."""
        for other in (self.workdir.parent).glob("*/state.json"):
            if other.parent == self.workdir:
                continue
            with contextlib.suppress(OSError, ValueError, TypeError):
                st = State(**json.loads(other.read_text()))
                if st.real_nodes and any(procs.alive(pid, "kubelet") for k, pid in st.pids.items() if k.startswith("kubelet-")):
                    raise DevClusterError(
                        f"cluster {st.name!r} already runs real nodes on this machine (one such cluster at a time)",
                        f"stop it first: `hexrl cluster down --name {st.name}`",
                    )

    def _real(self, state: State) -> realnodes.RealNodes:
        nodes = [realnodes.RealNode(**{**n, "dir": Path(n["dir"])}) for n in state.real_nodes]
        pids = {k: v for k, v in state.pids.items() if k not in ORDER}
        return realnodes.RealNodes(self.workdir, nodes, self.real_settings, self.progress, pids, state.node_ip)

    def _save_real(self, state: State, rn: realnodes.RealNodes) -> None:
        state.real_nodes = [
            {"name": n.name, "index": n.index, "pool": n.pool, "gpus": n.gpus, "labels": n.labels,
             "dir": str(n.dir), "kubelet_port": n.kubelet_port, "healthz_port": n.healthz_port}
            for n in rn.nodes
        ]  # fmt: skip
        state.pids = {**{k: v for k, v in state.pids.items() if k in ORDER}, **rn.pids}
        self._write_state(state)

    def _start_real_nodes(self, real: list[tuple[str, Any]], binaries: dict[str, str], inventory: Any) -> None:
        """containerd per node → images loaded → kubelets registered, labelled, GPUs advertised →
        kube-proxy and CoreDNS → every node Ready. State is saved after each step, so a failure in the
        middle is cleaned up by `down` like a finished start."""
        from hexrl.devcluster.images import ImageBuilder

        cluster = inv.parse(inventory)
        state = self._load_state()
        state.sysctls = realnodes.read_sysctls()
        nodes = [
            realnodes.RealNode(name=name, index=k, pool=pool.name, gpus=pool.gpus_per_node,
                               labels=inv.real_node_labels(pool, cluster), dir=self.workdir / "nodes" / name)
            for k, (name, pool) in enumerate(real)
        ]  # fmt: skip
        for n in nodes:
            if len(str(n.socket)) > 100:
                raise DevClusterError(f"the socket path {n.socket} is too long for a unix socket",
                                      "use a shorter cluster work folder (HEXRL_CACHE_DIR)")
        rn = realnodes.RealNodes(self.workdir, nodes, self.real_settings, self.progress, {}, state.node_ip)
        self._save_real(state, rn)
        started = time.monotonic()
        builder = ImageBuilder(self.builder.settings, progress=self.progress)
        images = {role: builder.build(role) for role in ("pause", "workers", "operator")}
        state.images = {role: image.name for role, image in images.items()}
        seed = realnodes.ensure_seed(self.builder.settings.cache_dir / "node-seed", list(images.values()),
                                     self.progress)
        try:
            rn.start_runtime(binaries, images["pause"].name, seed)
            self._save_real(state, rn)
            rn.start_kubelets(binaries, self._pki_files, self.api, self.server)
            self._save_real(state, rn)
            rn.start_services(binaries, self._pki_files, self.api, self.server)
            self._save_real(state, rn)
            rn.create_local_volumes(self.api)
            rn.wait_ready(self.api)
        finally:
            self._save_real(state, rn)
        self.progress(f"{len(nodes)} real nodes Ready in {time.monotonic() - started:.0f}s "
                      f"({', '.join(n.name for n in nodes)}; node IP {state.node_ip})")

    def load_image(self, role: str) -> str:
        """Build (if needed) the local image `role` (workers | operator | pause) and load it into every
        real node; returns its name."""
        from hexrl.devcluster.images import ImageBuilder, load_image

        state = self._load_state()
        image = getattr(ImageBuilder(self.builder.settings, progress=self.progress), role)()
        rn = self._real(state)
        for node in rn.nodes:
            load_image(image, ctr="ctr", address=str(node.socket))
        state.images[role] = image.name
        self._write_state(state)
        return str(image.name)

    def images(self) -> dict[str, str]:
        """Images loaded into the real nodes (role → name)."""
        return dict(self._load_state().images)

    def real_node_names(self) -> list[str]:
        state = self._read_state()
        return [n["name"] for n in state.real_nodes] if state else []

    def _stop_real_nodes(self, state: State) -> None:
        rn = self._real(state)
        if self._healthy("/readyz", state):
            rn.drain_pods(self.api)
        rn.stop(state.binaries.get("kube-proxy"))
        realnodes.restore_sysctls(state.sysctls)
        state.pids = {k: v for k, v in state.pids.items() if k in ORDER}
        self._write_state(state)

    def real_leftovers(self, state_before: dict[str, Any]) -> dict[str, list[str]]:
        """What the real nodes described by `state_before` (a `state.json` read before `down`) left on
        the machine; every list is empty after a clean `down`."""
        st = State(**state_before)
        return self._real(st).leftovers(st.sysctls)

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

    def wait_established(self, *crds: str, timeout: float = 60.0) -> None:
        """Wait until each CustomResourceDefinition is Established (bounded).

        Polled rather than `kubectl wait --for=condition=Established`: kubectl 1.34's wait fails at once,
        instead of waiting, while a just-created CRD has no `status.conditions` yet (seen on a loaded
        machine)."""
        deadline = time.monotonic() + timeout
        for crd in crds:
            path = '{.status.conditions[?(@.type=="Established")].status}'
            while True:
                proc = self.kubectl("get", "crd", crd, "-o", f"jsonpath={path}", check=False)
                if proc.returncode == 0 and proc.stdout.strip() == "True":
                    break
                if time.monotonic() > deadline:
                    raise DevClusterError(f"CRD {crd} not Established after {timeout:.0f}s: "
                                          f"{(proc.stderr or proc.stdout).strip()[:300]}")
                time.sleep(0.25)

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
        try:
            ctx = self._ssl() if component == "kube-apiserver" else ssl._create_unverified_context()
        except OSError:  # a half-removed work folder (its credentials gone): nothing healthy to talk to
            return False
        try:
            with urllib.request.urlopen(f"https://{procs.HOST}:{port}{path}", context=ctx, timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    # ------------------------------------------------------------------------------------------ startup

    def _start(self, binaries: dict[str, str], stages: Path, node_ip: str = "") -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = self._pick_ports()
        state = State(name=self.name, ports=ports, binaries=binaries, started_at=time.time(), owner_pid=os.getpid(),
                      node_ip=node_ip)
        self._write_state(state)
        self._pki_files = self._pki(node_ip)
        self._write_kubeconfigs(ports["kube-apiserver"])
        started: dict[str, subprocess.Popen[bytes]] = {}
        for component in ORDER:
            cmd = [binaries[component], *self._args(component, ports, stages, node_ip)]
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

    def _pki(self, node_ip: str = "") -> Pki:
        pki = Pki(self.workdir / "pki")
        pki.issue("apiserver", "kube-apiserver", server=True, extra_ips=(node_ip,) if node_ip else ())
        # The API server's identity towards kubelets (logs, exec, port-forward); masters pass their webhook.
        pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters")
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

    def _args(self, component: str, ports: dict[str, int], stages: Path, node_ip: str = "") -> list[str]:
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
                f"--etcd-servers=http://{h}:{ports['etcd']}",
                f"--secure-port={ports['kube-apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={s.service_cidr}",
                "--authorization-mode=Node,RBAC", "--allow-privileged=true",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                "--profiling=false", v,
                *self._network_args(node_ip),
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

    @staticmethod
    def _network_args(node_ip: str) -> list[str]:
        """Without real nodes the API server stays on loopback, with no endpoints for the `kubernetes`
        Service (Endpoints may not hold loopback addresses and no pod runs anyway). With real nodes, pods
        must reach it through that Service: it listens on every address, advertises the machine's, and
        dials kubelets by their InternalIP (by hostname it would fail: node names are not resolvable)."""
        if not node_ip:
            return [f"--bind-address={procs.HOST}", f"--advertise-address={procs.HOST}", "--endpoint-reconciler-type=none"]
        return ["--bind-address=0.0.0.0", f"--advertise-address={node_ip}", "--endpoint-reconciler-type=lease",
                "--kubelet-preferred-address-types=InternalIP"]

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
