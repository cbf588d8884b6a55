"""`podinfra lab up|down|status`: the whole lab's life, safe to repeat and safe after a crash."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from podinfra.data import sshconfig
from podinfra.images.registry import RegistryClient
from podinfra.lab import crio, image, node, pause, releases, upstream
from podinfra.lab.state import CRIO, RELEASE, STATE_ROOT, LabConfig, LabError, LabState, NodeState, pid_alive

INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "lab.py"
POD_SUPERNET = "10.244.0.0/16"
REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "docker-registry": "docker-registry",
    "gcc": "gcc",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "ssh": "openssh-client",
    "ip": "iproute2",
}


def progress(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def _check_host() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it mounts overlays, creates a bridge and boots nspawn nodes)")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise LabError(f"missing host packages: apt-get install {' '.join(missing)} (or run ./run demo)")


# Every node's systemd, journald and containerd run as root on the host, so all labs draw on root's
# inotify instances; at the default 128 a lab of about 20 nodes hangs at boot (systemd after
# network.target). (kind's known-issues page asks its users to raise the same two limits by hand.)
INOTIFY = {"max_user_instances": 8192, "max_user_watches": 524288}


def _raise_inotify_limits() -> None:
    for name, wanted in INOTIFY.items():
        path = Path("/proc/sys/fs/inotify") / name
        if int(path.read_text()) < wanted:
            path.write_text(f"{wanted}\n")


def _ensure_bridge(config: LabConfig) -> None:
    if not Path(f"/sys/class/net/{config.bridge}").exists():
        subprocess.run(["ip", "link", "add", config.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{config.gateway}/{config.prefixlen}", "dev", config.bridge], check=True)
    subprocess.run(["ip", "link", "set", config.bridge, "up"], check=True)


def _write_ssh_files(state: LabState) -> None:
    """A per-lab key, known_hosts pinned to each node's own host key, and an ssh_config."""
    state.ssh_key.parent.mkdir(parents=True, exist_ok=True)
    if not state.ssh_key.exists():
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"podinfra-{state.config.name}",
                "-f",
                str(state.ssh_key),
            ],
            check=True,
        )
    blocks = [
        sshconfig.block(
            n.name,
            n.address,
            hostname=n.address,
            user="root",
            identity=str(state.ssh_key),
            known_hosts=str(state.known_hosts),
            strict="yes",
            extra=("LogLevel ERROR",),
        )
        for n in state.nodes
    ]
    state.ssh_config.write_text("\n".join(blocks))


def _write_known_hosts(state: LabState) -> None:
    lines = [f"{n.name},{n.address} ssh-ed25519 {node.host_public_key(state.config, n.name)}\n" for n in state.nodes]
    state.known_hosts.write_text("".join(lines))


def up(config: LabConfig) -> LabState:
    """Bring the lab to running; anything already running is left as it is."""
    _release_tarballs_present(config.runtimes)
    _check_host()
    try:
        state = LabState.load(config.name)
    except LabError:
        if (config.root / "state.json").exists():  # a lab is up that this podinfra cannot read: down first
            raise
        state = None
    if state and state.config != config:
        raise LabError(
            f"lab {config.name!r} is up with a different shape ({state.config.nodes} nodes, {state.config.subnet}, "
            f"runtimes {','.join(state.config.runtimes)}); run `podinfra lab down --name {config.name}` first"
        )
    if state is None:
        pods = list(ipaddress.ip_network(POD_SUPERNET).subnets(new_prefix=24))
        state = LabState(
            config=config,
            nodes=[
                NodeState(name, group, addr, pod_subnet=str(pods[i]), runtime=runtime)
                for i, (name, group, addr, runtime) in enumerate(config.hosts())
            ],
        )
    started = time.monotonic()
    config.root.mkdir(parents=True, exist_ok=True)
    state.save()
    progress(f"node image (cached at {image.tarball_path()})")
    base = image.ensure_base(config.root / "image.log")
    layers = {}
    for runtime in dict.fromkeys(n.runtime for n in state.nodes):
        progress(f"{_label(runtime)} layer")
        layers[runtime] = _layer(runtime, config.root / "image.log")
    _raise_inotify_limits()
    _write_ssh_files(state)
    _ensure_bridge(config)
    booted = []
    for n in state.nodes:
        marker = str(node.rootfs(config, n.name))
        if pid_alive(n.pid, marker):
            continue
        layer, n.version = layers[n.runtime]
        progress(f"booting {n.name} ({n.address}, {n.runtime_name} {n.version})")
        node.prepare(state, n, base, layer)
        n.pid = node.boot(config, n)
        booted.append(n.name)
        state.save()
    _write_known_hosts(state)
    if not pid_alive(state.upstream_pid, str(upstream.directory(state))):
        progress(f"upstream registry on {state.upstream}")
        state.upstream_pid = upstream.start(state)
        state.save()
    progress("publishing pause images to upstream")
    pause.publish(RegistryClient(f"http://{state.upstream}"), config.root / "pause")
    if booted:
        progress(f"waiting for SSH and the runtime on {', '.join(booted)}")
        node.wait_for_ssh(state, booted)
    progress(f"lab {config.name} up in {time.monotonic() - started:.1f}s")
    return state


def _release_tarballs_present(runtimes: tuple[str, ...]) -> None:
    """Refuse a runtime whose release tarball is missing before the lab makes anything."""
    for runtime in dict.fromkeys(runtimes):
        if runtime == CRIO:
            releases.find(releases.CRIO, crio.LINE)
        elif image.suite_of(runtime) == RELEASE:
            releases.find(releases.CONTAINERD, runtime)


def _label(runtime: str) -> str:
    return runtime if runtime == CRIO else f"containerd {runtime}"


def _layer(runtime: str, log: Path) -> tuple[Path, str]:
    return crio.layer(log) if runtime == CRIO else image.line_layer(runtime, log)


def fetch(runtimes: tuple[str, ...], log: Path = Path("/dev/null")) -> dict[str, str]:
    """The layers of `runtimes` (containerd lines, CRIO) built in the cache from their Debian packages and
    release tarballs, so that a later `lab up` finds them; returns runtime -> version. Quick when cached."""
    return {
        _label(runtime): "(the node image's own)"
        if runtime != CRIO and image.suite_of(runtime) is None
        else _layer(runtime, log)[1]
        for runtime in runtimes
    }


def _mounts_under(root: Path) -> list[str]:
    mounts = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4]
            if point == str(root) or point.startswith(f"{root}/"):
                mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _leftover_pids(root: Path) -> list[int]:
    """Processes of a crashed lab: their command line names the lab, or their root mount is a
    node's overlay (a node whose nspawn was killed keeps running, orphaned, in its namespaces)."""
    marker = f"{root}/".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = proc.joinpath("cmdline").read_bytes()
            root_mount = next(line for line in proc.joinpath("mountinfo").read_bytes().splitlines() if b" / / " in line)
        except (OSError, StopIteration):
            continue
        if marker in cmdline or marker in root_mount:
            found.append(int(proc.name))
    return found


def down(name: str) -> None:
    """Remove all the lab made: nodes (by PID), registry, mounts, bridge, trees. Safe to repeat."""
    _check_host()
    try:
        state: LabState | None = LabState.load(name)
    except LabError:
        state = None
    config = state.config if state else LabConfig(name=name)
    root = config.root
    if state:
        for n in state.nodes:
            if pid_alive(n.pid, str(node.rootfs(config, n.name))):
                progress(f"stopping {n.name}")
                os.kill(n.pid, signal.SIGTERM)  # type: ignore[arg-type]
        for n in state.nodes:
            node.stop(n.pid, str(node.rootfs(config, n.name)))
        node.stop(state.upstream_pid, str(upstream.directory(state)), timeout=5)
    leftovers = _leftover_pids(root)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while leftovers and time.monotonic() < deadline:
        leftovers = [pid for pid in leftovers if Path(f"/proc/{pid}").exists()]
        time.sleep(0.1)
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], check=False)
    if Path(f"/sys/class/net/{config.bridge}").exists():
        subprocess.run(["ip", "link", "del", config.bridge], check=True)
    shutil.rmtree(root, ignore_errors=True)
    progress(f"lab {name} is down")


RESET = """\
set -e
cat > /etc/containerd/config.toml
rm -rf /etc/containerd/certs.d /etc/podinfra /var/lib/kubelet/kubeadm-flags.env /etc/containerd/config.toml.podinfra-*
# tests restart the runtime often (rollbacks, refusals): systemd's start limit must not refuse the reset's start
systemctl reset-failed containerd 2>/dev/null || true
systemctl restart containerd
for _ in $(seq 1 30); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
ctr -n k8s.io images ls -q 2>/dev/null | xargs -r ctr -n k8s.io images rm >/dev/null 2>&1
"""


def reset(name: str) -> None:
    """Put every node of group `nodes` back to its lab-fresh runtime state: its containerd line's
    config (or CRI-O's lab drop-in alone), no mirrors, no kubelet flags, no images. Running sandboxes
    are left alone."""
    state = LabState.load(name)
    for n in state.nodes:
        if n.group == "nodes":
            script, pristine = (
                (crio.RESET, crio.dropin()) if n.runtime == CRIO else (RESET, image.config_file(n.runtime))
            )
            subprocess.run(["ssh", "-F", str(state.ssh_config), n.name, script], input=pristine, check=True)
            if n.runtime == CRIO:
                crio.remove_images(state.ssh_config, n.name)
            progress(f"{n.name} reset")


def status(name: str) -> dict[str, Any]:
    """The lab as scripts read it (`podinfra lab status --json`)."""
    state = LabState.load(name)
    config = state.config
    nodes = [
        {
            "name": n.name,
            "address": n.address,
            "group": n.group,
            "state": "running" if pid_alive(n.pid, str(node.rootfs(config, n.name))) else "stopped",
            "pid": n.pid,
            "runtime": n.runtime_name,
            "version": n.version,
            "containerd": n.containerd,  # the line; None on a CRI-O node
            "containerd_version": n.containerd_version,
        }
        for n in state.nodes
    ]
    registry = next(n for n in state.nodes if n.group == "registry")
    upstream_state = "running" if pid_alive(state.upstream_pid, str(upstream.directory(state))) else "stopped"
    return {
        "lab": config.name,
        "nodes": nodes,
        "ssh": {
            "user": "root",
            "key": str(state.ssh_key),
            "config": str(state.ssh_config),
            "known_hosts": str(state.known_hosts),
        },
        "upstream": state.upstream,
        "registries": {
            "upstream": {"address": state.upstream, "state": upstream_state, "reachable_from": "control host only"},
            "local": {
                "host": registry.name,
                "address": f"{registry.address}:5000",
                "note": "provisioned by deploys/registry.py",
            },
        },
        "bridge": {"name": config.bridge, "address": f"{config.gateway}/{config.prefixlen}"},
        "inventory": str(INVENTORY),
        "state_root": str(STATE_ROOT),
    }
