"""Real Kubernetes nodes on this machine: containerd + runc, a kubelet per node, CNI, kube-proxy, CoreDNS.

An inventory pool with `real: true` becomes nodes that run containers here (CPU stands in for the GPUs
they advertise). Everything shares the machine's one network namespace, so the layout is:

- **per node** `<pool>-<i>` (index k among the real nodes): its own containerd (own root, state and
  socket — a kubelet kills every pod sandbox of its runtime that is not one of its pods, so two kubelets
  cannot share one), its own CNI bridge `hx<k>` with pod subnet `10.244.<100+k>.0/24` (host-local IPAM),
  and its own kubelet (own root dir, ports, pod-log dir and cgroup root `/hexrl-<node>`: a kubelet removes
  pod cgroups under its root that are not its pods). Pods on different nodes reach each other through the
  host's routing table between the bridges; nothing masquerades inside the pod network, so pods see each
  other's real IPs, as in any cluster.
- **per cluster** one kube-proxy (iptables mode; its rules are host-wide and serve both nodes) and one
  CoreDNS bound to the node IP, which every node's kubelet hands to its pods as the cluster DNS server, so
  `<svc>.<ns>.svc.cluster.local` resolves as usual.
- The node IP is the machine's own address (a kubelet refuses loopback): the API server then listens on
  all addresses so that pods reach it through the `kubernetes` Service, and dials kubelets by InternalIP.

What this machine needs (checked before anything starts, each with what to install): root, cgroup v1
controllers or cgroup v2, overlayfs, `containerd`, `runc`, `ctr`, the CNI plugins (`bridge`,
`host-local`, `portmap`, `loopback`), `iptables`, `ip`. Known quirks handled here: the sandbox lacks
CAP_SYS_RESOURCE, so containerd's CRI clamps oom_score_adj (`restrict_oom_score_adj`); cgroup v1 needs
the kubelet's `failCgroupV1: false` and the cgroupfs driver.

Teardown (`stop`) removes everything this made: pods are deleted through the API first (the kubelet then
stops their sandboxes, which runs CNI DEL: veths, IPAM, netns), then the kubelets, the remaining
containers through `ctr`, containerd and its shims, kube-proxy (`--cleanup` drops its KUBE-* chains),
CoreDNS, the bridges, leftover network namespaces holding our pod addresses, every mount under our
folders, and the cgroups. `leftovers()` lists what is still there (a test asserts it is empty).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from hexrl.devcluster import procs
from hexrl.devcluster.errors import DevClusterError

CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
"""Where Debian's containernetworking-plugins (first) and upstream tarballs put the CNI plugins."""
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CGROUP_V1 = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/var/run/netns")
POD_NET = ipaddress.ip_network("10.244.0.0/16")
"""The whole pod network (kwok nodes draw from the low /24s; real nodes use 10.244.100+k.0/24)."""
REAL_SUBNET_BASE = 100
APT_PACKAGES = "containerd runc containernetworking-plugins iptables conntrack iproute2"
TOUCHED_SYSCTLS = (
    "net/ipv4/ip_forward",  # the bridge plugin turns on forwarding between the node bridges
    # the kubelet's kernel defaults (with protectKernelDefaults false it writes them)
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)
"""Kernel settings the real nodes change; recorded at start and restored at teardown."""


def read_sysctls() -> dict[str, str]:
    out = {}
    for key in TOUCHED_SYSCTLS:
        with contextlib.suppress(OSError):
            out[key] = (Path("/proc/sys") / key).read_text().strip()
    return out


def restore_sysctls(saved: dict[str, str]) -> None:
    for key, value in saved.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / key).write_text(value)


@dataclass(frozen=True)
class RealNodeSettings:
    """How the real nodes run."""

    node_ip: str | None = None
    """Address the kubelets register and CoreDNS binds (default: the machine's address on its default
    route; a loopback address is refused by the kubelet)."""
    cluster_domain: str = "cluster.local"
    """DNS domain of Services (`<svc>.<ns>.svc.<domain>`)."""
    start_timeout_seconds: float = 120.0
    """Upper bound for a node to register and become Ready (a warm start takes ~10 s)."""
    drain_timeout_seconds: float = 60.0
    """Upper bound, on teardown, for the kubelets to stop the pods the API deleted."""
    log_verbosity: int = 1
    """klog `-v` of kubelet and kube-proxy."""
    storage_class: str = "hexrl-local"
    """Name of the default StorageClass whose hostPath volumes back PVCs on real nodes."""
    local_volumes: int = 8
    """Pre-made volumes of that class (each PVC binds one; they live under the cluster's folder)."""
    local_volume_size: str = "5Gi"
    """Advertised capacity of each volume (not enforced: hostPath shares the machine's disk)."""


@dataclass
class RealNode:
    """One real node's identity and files."""

    name: str
    index: int
    pool: str
    gpus: int
    labels: dict[str, str]
    dir: Path
    kubelet_port: int = 0
    healthz_port: int = 0

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def bridge(self) -> str:
        return f"hx{self.index}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.244.{REAL_SUBNET_BASE + self.index}.0/24")

    @property
    def cgroup_root(self) -> str:
        return f"/hexrl-{self.name}"

    @property
    def network_name(self) -> str:
        return f"hexrl-{self.name}"


# ------------------------------------------------------------------------------------------ preflight


def detect_node_ip() -> str:
    """The machine's source address towards the default route (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("203.0.113.1", 9))  # TEST-NET-3: only the route is looked up, nothing is sent
            ip = str(s.getsockname()[0])
        except OSError:
            ip = ""
    if not ip or ipaddress.ip_address(ip).is_loopback:
        raise DevClusterError(
            "real nodes need a non-loopback address of this machine for the kubelets, and none was found",
            "bring up a network interface with an address (or pass node_ip in RealNodeSettings)",
        )
    return ip


def cni_bin_dir() -> Path | None:
    for d in CNI_BIN_DIRS:
        if all((Path(d) / p).is_file() for p in CNI_PLUGINS):
            return Path(d)
    return None


def preflight() -> list[str]:
    """Problems that stop real nodes from running here, each naming what to do (empty = fine)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("real nodes need root (containerd, runc, network namespaces, iptables): run as root")
    if not (CGROUP_V1 / "memory").is_dir() and not (CGROUP_V1 / "cgroup.controllers").is_file():
        problems.append("no cgroup hierarchy at /sys/fs/cgroup: mount cgroup v1 controllers or cgroup v2")
    if "overlay" not in Path("/proc/filesystems").read_text():
        problems.append("the kernel has no overlayfs: `modprobe overlay`")
    for tool, package in (("containerd", "containerd"), ("runc", "runc"), ("ctr", "containerd"),
                          ("iptables", "iptables"), ("ip", "iproute2")):  # fmt: skip
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not installed: `apt-get install {package}`")
    if cni_bin_dir() is None:
        problems.append(
            f"the CNI plugins {', '.join(CNI_PLUGINS)} were not found in {', '.join(CNI_BIN_DIRS)}: "
            "`apt-get install containernetworking-plugins`"
        )
    return problems


def require_ready() -> None:
    problems = preflight()
    if problems:
        raise DevClusterError(
            "this machine cannot run real nodes:\n    - " + "\n    - ".join(problems),
            f"on Debian: `apt-get install {APT_PACKAGES}` as root; or drop `real: true` from the inventory",
        )


# ------------------------------------------------------------------------------------------- configs


def containerd_config(node: RealNode, pause_image: str, cni_bin: Path) -> str:
    """containerd 1.6 config (version 2) for one node: private root/state/socket, CRI on runc + cgroupfs."""
    d = node.dir
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d / 'containerd' / 'root'}"
state = "{d / 'containerd' / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{node.socket}"

[ttrpc]
  address = "{node.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'containerd' / 'opt'}"

[{cri}]
  sandbox_image = "{pause_image}"
  # This machine withholds CAP_SYS_RESOURCE: a negative oom_score_adj (sandboxes -998, Guaranteed pods
  # -997) makes runc fail with "can't get final child's PID from pipe: EOF". Clamp it to ours.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 16384

  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false

  [{cri}.cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{d / 'cni' / 'net.d'}"
    max_conf_num = 1
"""


def cni_config(node: RealNode) -> dict[str, Any]:
    """Bridge network of one node. No ipMasq: pods only talk to each other and to this machine, and
    masquerading would hide a pod's address from pods on the other node."""
    gateway = str(next(node.subnet.hosts()))
    return {
        "cniVersion": "0.4.0",
        "name": node.network_name,
        "plugins": [
            {
                "type": "bridge", "bridge": node.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {
                    "type": "host-local", "ranges": [[{"subnet": str(node.subnet), "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(node.dir / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(node: RealNode, ca: Path, node_ip: str, dns_ip: str, domain: str) -> dict[str, Any]:
    """KubeletConfiguration of one node (see the module docstring for why each path is private)."""
    d = node.dir
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": node.healthz_port,
        "tlsCertFile": str(d / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(d / "kubelet-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [dns_ip],
        "clusterDomain": domain,
        "resolvConf": "",  # pods get only the cluster DNS, not this machine's search list
        "podLogsDir": str(d / "pod-logs"),
        "volumePluginDir": str(d / "volume-plugins"),
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "serializeImagePulls": False,
        # Images are loaded locally and cannot be pulled again: never garbage-collect them, never evict
        # for a disk that is merely busy with other work.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "registerWithTaints": [],
        "maxPods": 110,
        "protectKernelDefaults": False,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(kubeconfig: Path, hostname: str, metrics_port: int, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": str(POD_NET),
        "hostnameOverride": hostname,
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        # Do not touch the machine's conntrack sysctls (a shared host; its defaults are fine at this size),
        # nor route_localnet (NodePorts on 127.0.0.1 are not needed here).
        "conntrack": {"maxPerCore": 0, "min": 0},
        "iptables": {"localhostNodePorts": False},
    }


def corefile(node_ip: str, domain: str, kubeconfig: Path, health_port: int, ready_port: int) -> str:
    return f""".:53 {{
    bind {node_ip}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . /etc/resolv.conf
    cache 5
}}
"""


COREDNS_RBAC: list[dict[str, Any]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "hexrl:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "pods", "namespaces", "endpoints"],
             "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "hexrl:coredns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hexrl:coredns"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}],
    },
]


# ----------------------------------------------------------------------------------------- host state


def run(cmd: list[str], check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise DevClusterError(f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip()[:500]}")
    return proc


def mounts_under(roots: list[Path]) -> list[str]:
    """Mount points at or below any of `roots` (deepest first, so they can be unmounted in order)."""
    prefixes = [str(r.resolve()) if r.exists() else str(r) for r in roots]
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(roots: list[Path]) -> None:
    """Unmount everything below `roots`; lazily (MNT_DETACH) when a plain unmount is refused."""
    for _ in range(3):
        points = mounts_under(roots)
        if not points:
            return
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "-l", point], check=False)


def pod_netns() -> list[str]:
    """Network namespaces in /var/run/netns whose interfaces hold an address of our real-node subnets."""
    out: list[str] = []
    if not NETNS_DIR.is_dir():
        return out
    for ns in sorted(p.name for p in NETNS_DIR.iterdir()):
        addrs = run(["ip", "-n", ns, "-j", "-4", "addr"], check=False).stdout
        with contextlib.suppress(ValueError):
            for link in json.loads(addrs or "[]"):
                for a in link.get("addr_info", []):
                    ip = ipaddress.ip_address(a.get("local", "0.0.0.0"))
                    if ip in POD_NET and int(str(ip).split(".")[2]) >= REAL_SUBNET_BASE:
                        out.append(ns)
    return sorted(set(out))


def bridges() -> list[str]:
    """Our CNI bridges (`hx<k>`) present on the machine."""
    links = json.loads(run(["ip", "-j", "link", "show", "type", "bridge"], check=False).stdout or "[]")
    return sorted(link["ifname"] for link in links if re.fullmatch(r"hx\d+", link.get("ifname", "")))


OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-HOSTPORT-", "CNI-DN-")
"""iptables chains that kube-proxy, the kubelet and the CNI portmap plugin create (one real-node cluster
runs per machine at a time, so these are ours)."""


def _iptables_save(family: str, table: str) -> str:
    return run([f"{family}-save", "-t", table], check=False).stdout


def our_chains(text: str, names: list[str]) -> set[str]:
    """Chains of one `iptables-save` table that are ours: by prefix, or jumped to from a rule that names
    one of our CNI networks in its comment."""
    chains = {line[1:].split()[0] for line in text.splitlines() if line.startswith(":")}
    ours = {c for c in chains if c.startswith(OUR_CHAIN_PREFIXES)}
    for line in text.splitlines():
        if line.startswith("-A") and any(n in line for n in names):
            m = re.search(r"-j (\S+)", line)
            if m and m[1] in chains:
                ours.add(m[1])
    return ours


def iptables_leftovers(names: list[str]) -> list[str]:
    """Our chains and the rules that jump to them or name our networks, in both address families."""
    found = []
    for family in ("iptables", "ip6tables"):
        for table in ("nat", "filter", "mangle"):
            text = _iptables_save(family, table)
            chains = our_chains(text, names)
            found += [f"{family} {table}: chain {c}" for c in sorted(chains)]
            for line in text.splitlines():
                if line.startswith("-A") and line.split()[1] not in chains and _rule_is_ours(line, chains, names):
                    found.append(f"{family} {table}: {line}")
    return found


def _rule_is_ours(line: str, chains: set[str], names: list[str]) -> bool:
    m = re.search(r"-j (\S+)", line)
    return bool(m and m[1] in chains) or any(n in line for n in names)


def remove_iptables(names: list[str]) -> None:
    """Delete the rules that lead into our chains, then flush and delete the chains (both families)."""
    for family in ("iptables", "ip6tables"):
        for table in ("nat", "filter", "mangle"):
            text = _iptables_save(family, table)
            chains = our_chains(text, names)
            for line in text.splitlines():
                if line.startswith("-A") and line.split()[1] not in chains and _rule_is_ours(line, chains, names):
                    run([family, "-t", table, "-D", *shlex.split(line[3:])], check=False)
            for chain in chains:
                run([family, "-t", table, "-F", chain], check=False)
            for chain in chains:
                run([family, "-t", table, "-X", chain], check=False)


def our_cgroups(nodes: list[str]) -> list[Path]:
    return [p for n in nodes for p in CGROUP_V1.glob(f"*/hexrl-{n}") if p.is_dir()]


def remove_cgroup_tree(root: Path) -> None:
    """rmdir a cgroup and its children bottom-up (possible once no process is left in them)."""
    for sub in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def make_cgroup_root(name: str) -> None:
    """Create `/<name>` in every cgroup v1 controller the kubelet uses (cpuset needs cpus/mems copied)."""
    for ctl in CGROUP_V1.iterdir():
        if not ctl.is_dir() or ctl.name == "unified" or not (ctl / "cgroup.procs").exists():
            continue
        d = ctl / name.lstrip("/")
        d.mkdir(exist_ok=True)
        if ctl.name == "cpuset":
            for f in ("cpuset.cpus", "cpuset.mems"):
                if (d / f).read_text().strip() == "":
                    (d / f).write_text((ctl / f).read_text())


# --------------------------------------------------------------------------------------- image seed


SEED_CONFIG = """version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{state}/opt"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
"""


def seed_key(images: list[Any]) -> str:
    """Seeds are keyed by the image digests and the containerd version (its on-disk format)."""
    import hashlib

    version = run(["containerd", "--version"], check=False).stdout.strip()
    return hashlib.sha256("\n".join([version, *sorted(i.digest for i in images)]).encode()).hexdigest()[:16]


def ensure_seed(cache: Path, images: list[Any], progress: Callable[[str], None]) -> Path:
    """A containerd root holding `images` unpacked: what every real node's containerd starts from.

    Importing the 6-GB worker image into each node's containerd would copy it twice per node (content
    store + unpacked snapshot) on every `cluster up`. Instead it is imported once into this seed (cached
    under `cache`), and each node's root is a hard-linked copy of it (`clone_seed`): seconds, no disk.
    A new seed starts as a hard-linked copy of the newest old one, so an image that differs only in its
    project layer imports only that layer. Committed snapshots and content blobs are never written in
    place, so sharing their files is safe; the bolt databases are copied for real.
    """
    from hexrl.devcluster.images import load_image

    key = seed_key(images)
    seed = cache / key
    if (seed / "root").is_dir():
        return seed
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.tmp"
    unmount_all([tmp])
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    previous = sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime)  # fmt: skip
    if previous:
        clone_root(previous[-1] / "root", tmp / "root")
    sock = Path("/run/hexrl-seed") / f"{key}.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "config.toml"
    cfg.write_text(SEED_CONFIG.format(root=tmp / "root", state=tmp / "state", socket=sock))
    log = tmp / "containerd.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(["containerd", "--config", str(cfg), "--log-level", "warn"], stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while run(["ctr", "--address", str(sock), "version"], check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DevClusterError(f"containerd for the image seed did not start: {procs.tail(log)}",
                                      f"full log: {log}")
            time.sleep(0.25)
        started = time.monotonic()
        for image in images:
            load_image(image, ctr="ctr", address=str(sock))
        _drop_other_images(sock, {i.name for i in images})
        progress(f"images imported into the node runtime seed in {time.monotonic() - started:.0f}s")
    finally:
        procs.stop(proc.pid, marker="containerd")
        unmount_all([tmp])
        sock.unlink(missing_ok=True)
        Path(f"{sock}.ttrpc").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            sock.parent.rmdir()
    shutil.rmtree(tmp / "state", ignore_errors=True)
    tmp.rename(seed)
    for old in previous:
        shutil.rmtree(old, ignore_errors=True)
    return seed


def _drop_other_images(sock: Path, keep: set[str]) -> None:
    """Remove the images of an older seed (copied in with it) that are not wanted now; `--sync` waits for
    containerd's garbage collector, so their content and snapshots leave the new seed before it is used
    (a changed 6-GB venv layer would otherwise double the seed at every change)."""
    listed = run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "ls", "-q"], check=False).stdout.split()
    stale = [name for name in listed if name not in keep]
    if stale:
        run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "rm", "--sync", *stale], check=False, timeout=600)


def clone_root(source: Path, dest: Path) -> None:
    """A hard-linked copy of a containerd root, with private copies of its databases (written in place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-al", str(source), str(dest)], timeout=600)
    for db in source.rglob("*.db"):
        target = dest / db.relative_to(source)
        target.unlink()
        shutil.copy2(db, target)


# ---------------------------------------------------------------------------------------------- nodes


Api = Callable[..., dict[str, Any]]


@dataclass
class RealNodes:
    """Starts and stops the real nodes of one dev cluster (processes recorded in `pids`)."""

    workdir: Path
    nodes: list[RealNode]
    settings: RealNodeSettings = field(default_factory=RealNodeSettings)
    progress: Callable[[str], None] = print
    pids: dict[str, int] = field(default_factory=dict)
    node_ip: str = ""

    @property
    def dns_ip(self) -> str:
        return self.node_ip

    def logs(self) -> Path:
        return self.workdir / "logs"

    # -------------------------------------------------------------------------------------- start

    def start_runtime(self, binaries: dict[str, str], pause_image: str, seed: Path) -> None:
        """containerd per node, its root a hard-linked copy of the image seed (see `ensure_seed`)."""
        cni_bin = cni_bin_dir()
        assert cni_bin is not None  # preflight checked
        for node in self.nodes:
            clone_root(seed / "root", node.dir / "containerd" / "root")
            (node.dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
            (node.dir / "containerd").mkdir(parents=True, exist_ok=True)
            (node.dir / "cni" / "net.d" / "10-hexrl.conflist").write_text(json.dumps(cni_config(node), indent=2))
            cfg = node.dir / "containerd" / "config.toml"
            cfg.write_text(containerd_config(node, pause_image, cni_bin))
            key = f"containerd-{node.name}"
            proc = procs.start(["containerd", "--config", str(cfg), "--log-level", "warn"],
                               self.logs() / f"{key}.log", cwd=node.dir)  # fmt: skip
            self.pids[key] = proc.pid
            self._wait(key, partial(_containerd_answers, node), proc)

    def ctr(self, node: RealNode, *args: str, check: bool = True, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        return run(["ctr", "--address", str(node.socket), "--namespace", "k8s.io", *args], check=check, timeout=timeout)

    def start_kubelets(self, binaries: dict[str, str], pki: Any, api: Api, server: str) -> None:
        """A kubelet per node, registered as `<pool>-<i>`; then labels and `nvidia.com/gpu` are patched on."""
        for node in self.nodes:
            node.kubelet_port = procs.free_port()
            node.healthz_port = procs.free_port()
            creds = pki.issue(f"kubelet-{node.name}", f"system:node:{node.name}", org="system:nodes")
            serving = pki.issue(f"kubelet-serving-{node.name}", f"system:node:{node.name}", org="system:nodes",
                                server=True, extra_ips=(self.node_ip,), extra_names=(node.name,))
            shutil.copyfile(serving.cert, node.dir / "kubelet-serving.crt")
            shutil.copyfile(serving.key, node.dir / "kubelet-serving.key")
            kubeconfig = node.dir / "kubelet.kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server, pki.ca.cert, creds.cert, creds.key, node.name)))
            cfg = node.dir / "kubelet.yaml"
            cfg.write_text(yaml.safe_dump(kubelet_config(node, pki.ca.cert, self.node_ip, self.dns_ip,
                                                         self.settings.cluster_domain)))
            make_cgroup_root(node.cgroup_root)
            key = f"kubelet-{node.name}"
            cmd = [binaries["kubelet"], f"--config={cfg}", f"--kubeconfig={kubeconfig}",
                   f"--hostname-override={node.name}", f"--node-ip={self.node_ip}",
                   f"--root-dir={node.dir / 'kubelet'}", f"--cert-dir={node.dir / 'kubelet-pki'}",
                   f"--v={self.settings.log_verbosity}"]  # fmt: skip
            proc = procs.start(cmd, self.logs() / f"{key}.log", cwd=node.dir)
            self.pids[key] = proc.pid
        for node in self.nodes:
            self._wait_registered(node, api)
            api("PATCH", f"/api/v1/nodes/{node.name}", {"metadata": {"labels": node.labels}})
            gpu = {"nvidia.com/gpu": str(node.gpus)}
            # The documented way to advertise an extended resource: PATCH the node's status capacity
            # (the kubelet derives allocatable from it and keeps it on its own status updates).
            api("PATCH", f"/api/v1/nodes/{node.name}/status", {"status": {"capacity": gpu, "allocatable": gpu}})

    def start_services(self, binaries: dict[str, str], pki: Any, api: Api, server: str) -> None:
        """kube-proxy (iptables) and CoreDNS, host processes serving every real node."""
        proxy = pki.issue("kube-proxy", "system:kube-proxy")
        kc = self.workdir / "kube-proxy.kubeconfig"
        kc.write_text(yaml.safe_dump(_kubeconfig(server, pki.ca.cert, proxy.cert, proxy.key, "kube-proxy")))
        m_port, h_port = procs.free_port(), procs.free_port()
        cfg = self.workdir / "kube-proxy.yaml"
        cfg.write_text(yaml.safe_dump(kube_proxy_config(kc, self.nodes[0].name, m_port, h_port)))
        proc = procs.start([binaries["kube-proxy"], f"--config={cfg}", f"--v={self.settings.log_verbosity}"],
                           self.logs() / "kube-proxy.log", cwd=self.workdir)  # fmt: skip
        self.pids["kube-proxy"] = proc.pid
        self._wait("kube-proxy", lambda: _http_ok(f"http://127.0.0.1:{h_port}/healthz"), proc)

        for obj in COREDNS_RBAC:
            kind = "clusterroles" if obj["kind"] == "ClusterRole" else "clusterrolebindings"
            api("POST", f"/apis/rbac.authorization.k8s.io/v1/{kind}", obj)
        dns = pki.issue("coredns", "system:coredns")
        dkc = self.workdir / "coredns.kubeconfig"
        dkc.write_text(yaml.safe_dump(_kubeconfig(server, pki.ca.cert, dns.cert, dns.key, "coredns")))
        health, ready = procs.free_port(), procs.free_port()
        cf = self.workdir / "Corefile"
        cf.write_text(corefile(self.node_ip, self.settings.cluster_domain, dkc, health, ready))
        proc = procs.start([binaries["coredns"], "-conf", str(cf)], self.logs() / "coredns.log", cwd=self.workdir)
        self.pids["coredns"] = proc.pid
        self._wait("coredns", lambda: _http_ok(f"http://127.0.0.1:{ready}/ready"), proc)

    def create_local_volumes(self, api: Api) -> None:
        """A default StorageClass with pre-made hostPath volumes under the cluster's folder, so a PVC (the
        trainer's checkpoints) binds as on a cloud cluster. Both nodes are this machine, so a volume is
        reachable from either: a trainer rescheduled to the other node finds its checkpoints. The folders
        are world-writable because the job's pods run as a non-root user and hostPath ignores fsGroup."""
        sc = self.settings.storage_class
        api("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": sc, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kubernetes.io/no-provisioner", "reclaimPolicy": "Retain",
            "volumeBindingMode": "Immediate",
        })  # fmt: skip
        for i in range(self.settings.local_volumes):
            path = self.workdir / "volumes" / f"pv-{i}"
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)
            api("POST", "/api/v1/persistentvolumes", {
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": f"{sc}-{i}", "labels": {"hexrl.dev/local-volume": "true"}},
                "spec": {"capacity": {"storage": self.settings.local_volume_size},
                         "accessModes": ["ReadWriteOnce", "ReadWriteMany"], "storageClassName": sc,
                         "persistentVolumeReclaimPolicy": "Retain",
                         "hostPath": {"path": str(path), "type": "Directory"}},
            })  # fmt: skip

    def wait_ready(self, api: Api) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        pending = {n.name for n in self.nodes}
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                node = api("GET", f"/api/v1/nodes/{name}")
                conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                gpus = node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu")
                if conds.get("Ready") == "True" and gpus:
                    pending.discard(name)
            if pending:
                time.sleep(0.5)
        if pending:
            raise DevClusterError(
                f"real nodes {sorted(pending)} did not become Ready with their GPUs advertised",
                f"see {self.logs()}/kubelet-<node>.log and containerd-<node>.log",
            )

    def _wait_registered(self, node: RealNode, api: Api) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        key = f"kubelet-{node.name}"
        while time.monotonic() < deadline:
            if not procs.alive(self.pids[key], "kubelet"):
                raise DevClusterError(
                    f"the kubelet of {node.name} exited during start-up:\n    {procs.tail(self.logs() / f'{key}.log')}",
                    f"full log: {self.logs() / f'{key}.log'}",
                )
            items = api("GET", f"/api/v1/nodes?fieldSelector=metadata.name%3D{node.name}").get("items", [])
            if items:
                return
            time.sleep(0.5)
        raise DevClusterError(
            f"the kubelet of {node.name} did not register within {self.settings.start_timeout_seconds:.0f}s:\n"
            f"    {procs.tail(self.logs() / f'{key}.log')}",
            f"full log: {self.logs() / f'{key}.log'}",
        )

    def _wait(self, component: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        log = self.logs() / f"{component}.log"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DevClusterError(f"{component} exited during start-up:\n    {procs.tail(log)}", f"full log: {log}")
            if ready():
                return
            time.sleep(0.25)
        raise DevClusterError(f"{component} was not ready after {self.settings.start_timeout_seconds:.0f}s:\n    {procs.tail(log)}",
                              f"full log: {log}")

    # --------------------------------------------------------------------------------------- stop

    def drain_pods(self, api: Api) -> None:
        """Delete every pod bound to a real node and wait (bounded) until its kubelet has stopped it, so
        CNI DEL runs for each sandbox (veth, address, netns and portmap rules go away cleanly)."""
        names = {n.name for n in self.nodes}
        deadline = time.monotonic() + self.settings.drain_timeout_seconds
        asked: set[str] = set()
        while time.monotonic() < deadline:
            try:
                pods = [p for p in api("GET", "/api/v1/pods").get("items", []) if p["spec"].get("nodeName") in names]
            except DevClusterError:
                return
            if not pods:
                return
            for p in pods:
                uid = p["metadata"]["uid"]
                if uid not in asked:
                    asked.add(uid)
                    ns, name = p["metadata"]["namespace"], p["metadata"]["name"]
                    with contextlib.suppress(DevClusterError):
                        api("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}?gracePeriodSeconds=2")
            time.sleep(0.5)

    def stop(self, kube_proxy: str | None) -> None:
        """Stop every process and remove what it made (see the module docstring); safe to repeat."""
        for key in [k for k in self.pids if k.startswith("kubelet-")]:
            procs.stop(self.pids.pop(key), marker="kubelet")
        for key in ("coredns", "kube-proxy"):
            if key in self.pids:
                procs.stop(self.pids.pop(key), marker=key)
        for node in self.nodes:
            self._remove_containers(node)
            key = f"containerd-{node.name}"
            if key in self.pids:
                procs.stop(self.pids.pop(key), marker="containerd")
            self._kill_shims(node)
        if kube_proxy:
            run([kube_proxy, "--cleanup"], check=False)
        self.sweep()

    def _remove_containers(self, node: RealNode) -> None:
        """Kill and delete every container left in the node's containerd (pods the API could not drain)."""
        if not node.socket.exists():
            return
        listed = self.ctr(node, "containers", "list", "-q", check=False, timeout=30)
        for cid in listed.stdout.split():
            self.ctr(node, "tasks", "kill", "-s", "SIGKILL", cid, check=False, timeout=30)
            for _ in range(20):
                if self.ctr(node, "tasks", "delete", cid, check=False, timeout=30).returncode == 0:
                    break
                if "not found" in self.ctr(node, "tasks", "ps", cid, check=False, timeout=30).stderr:
                    break
                time.sleep(0.25)
            self.ctr(node, "containers", "delete", cid, check=False, timeout=30)

    def _kill_shims(self, node: RealNode) -> None:
        """containerd's shims outlive it by design; stop those that served this node's containerd."""
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            cmdline = ""
            with contextlib.suppress(OSError):
                cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "containerd-shim" in cmdline and str(node.socket) in cmdline:
                with contextlib.suppress(DevClusterError):
                    procs.stop(int(pid_dir.name), marker="containerd-shim", grace_seconds=3)

    def sweep(self) -> None:
        """Remove what a crash may have left: mounts, network namespaces, bridges, iptables rules, cgroups."""
        unmount_all([n.dir for n in self.nodes] + [self.workdir])
        for ns in pod_netns():
            run(["ip", "netns", "delete", ns], check=False)
        for br in bridges():
            run(["ip", "link", "delete", br], check=False)
        remove_iptables([n.network_name for n in self.nodes])
        for cg in our_cgroups([n.name for n in self.nodes]):
            remove_cgroup_tree(cg)

    def leftovers(self, sysctls: dict[str, str] | None = None) -> dict[str, list[str]]:
        """What of ours is still on the machine (empty lists = clean); `sysctls`: the values before start."""
        names = [n.name for n in self.nodes]
        shims = []
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit():
                with contextlib.suppress(OSError):
                    cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if any(str(n.socket) in cmd for n in self.nodes):
                        shims.append(f"{pid_dir.name}: {cmd[:120]}")
        return {
            "processes": shims + [f"{k}: {pid}" for k, pid in self.pids.items() if procs.alive(pid)],
            "mounts": mounts_under([n.dir for n in self.nodes] + [self.workdir]),
            "netns": pod_netns(),
            "bridges": bridges(),
            "iptables": iptables_leftovers([n.network_name for n in self.nodes]),
            "cgroups": [str(p) for p in our_cgroups(names)],
            "sysctls": [f"{k}: {v} (was {sysctls[k]})" for k, v in read_sysctls().items()
                        if sysctls and k in sysctls and sysctls[k] != v],
        }


def _containerd_answers(node: RealNode) -> bool:
    """Whether the node's containerd answers on its socket (it is up)."""
    return run(["ctr", "--address", str(node.socket), "version"], check=False).returncode == 0


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    import base64

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "hexrl", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "hexrl", "context": {"cluster": "hexrl", "user": user}}],
        "current-context": "hexrl",
    }  # fmt: skip
