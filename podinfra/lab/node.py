"""One lab node: an overlay over the shared base tree, booted by systemd-nspawn on the lab bridge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from podinfra.lab.state import LabConfig, LabError, LabState, NodeState, pid_alive


def node_dir(config: LabConfig, name: str) -> Path:
    return config.root / "nodes" / name


def rootfs(config: LabConfig, name: str) -> Path:
    return node_dir(config, name) / "root"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def cni_conflist(pod_subnet: str) -> str:
    """A bridge network for the node's pods; no masquerade, since nothing may leave the lab."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "lab-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_subnet}]]},
                },
                {"type": "loopback"},
            ],
        },
        indent=2,
    )


def prepare(state: LabState, node: NodeState, base: Path, layer: Path) -> None:
    """Mount the node's overlay (its containerd line's `layer` over the shared `base`) and write what
    makes it this node: name, address, keys, pod net."""
    config = state.config
    top = node_dir(config, node.name)
    root = rootfs(config, node.name)
    for sub in ("upper", "work", "root", "containerd"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(root):
        options = f"lowerdir={layer}:{base},upperdir={top / 'upper'},workdir={top / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(root)], check=True)
    _write(root / "etc/hostname", node.name + "\n")
    _write(root / "etc/machine-id", uuid.uuid5(uuid.NAMESPACE_DNS, f"{config.name}.{node.name}").hex + "\n")
    # No Gateway: the node reaches the lab subnet and nothing else.
    _write(
        root / "etc/systemd/network/10-podinfra-lab.network",
        f"[Match]\nName=host0\n\n[Network]\nAddress={node.address}/{config.prefixlen}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    )
    _write(root / "etc/cni/net.d/10-lab-pods.conflist", cni_conflist(node.pod_subnet))
    _write(root / "root/.ssh/authorized_keys", state.ssh_key.with_suffix(".pub").read_text(), 0o600)
    host_key = top / "ssh_host_ed25519_key"
    if not host_key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node.name, "-f", str(host_key)], check=True
        )
    _write(root / "etc/ssh/ssh_host_ed25519_key", host_key.read_text(), 0o600)
    _write(root / "etc/ssh/ssh_host_ed25519_key.pub", host_key.with_suffix(".pub").read_text())


def host_public_key(config: LabConfig, name: str) -> str:
    return (node_dir(config, name) / "ssh_host_ed25519_key.pub").read_text().split()[:2][1]


def boot(config: LabConfig, node: NodeState) -> int:
    """Start systemd inside the node; returns the nspawn PID, recorded for `lab down`."""
    top = node_dir(config, node.name)
    console = (top / "console.log").open("ab")
    process = subprocess.Popen(
        [
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
            f"--directory={top / 'root'}",
            f"--machine={config.name}-{node.name}",  # nspawn names the host veth after it
            f"--network-bridge={config.bridge}",
            "--capability=all",
            # runc joins a session keyring; containerd's CNI plugins need bpf.
            "--system-call-filter=@keyring bpf",
            f"--bind={top / 'containerd'}:/var/lib/containerd",
            "--console=read-only",
            "--boot",
        ],
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process.pid


def stop(pid: int | None, marker: str, timeout: float = 20) -> None:
    """Power the node off (nspawn turns SIGTERM into an orderly shutdown), then make sure."""
    if not pid_alive(pid, marker):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


CGROUPS_UNIT = "podinfra-lab-cgroups.service"


def wait_for_ssh(state: LabState, names: list[str], stall: float = 180, probes: int = 16) -> None:
    """Until each node answers SSH with its runtime's service active, asking `probes` nodes at a time. A fleet
    booting on a few cores comes up slowly but steadily, so the limit is on `stall`: seconds with no node
    coming up, not the whole wait."""

    def answers(name: str) -> bool:
        argv = ["ssh", "-F", str(state.ssh_config), "-o", "ConnectTimeout=5", name]
        service = state.node(name).service
        # Under load, a node's systemd may fail to put the cgroups unit into its cgroup ("Failed to attach to
        # compat systemd cgroup", status 219/CGROUP) and the runtime fails with it, by dependency: start both
        # again, as often as that happens.
        again = f"systemctl reset-failed {CGROUPS_UNIT} && systemctl --no-block start {CGROUPS_UNIT} {service}"
        command = f"systemctl is-active {service} || {{ systemctl -q is-failed {CGROUPS_UNIT} && {again}; false; }}"
        return subprocess.run([*argv, command], capture_output=True).returncode == 0

    pending = set(names)
    deadline = time.monotonic() + stall
    with ThreadPoolExecutor(probes) as pool:
        while pending and time.monotonic() < deadline:
            up = {name for name, ok in zip(sorted(pending), pool.map(answers, sorted(pending)), strict=True) if ok}
            if up:
                pending -= up
                deadline = time.monotonic() + stall
            elif pending:
                time.sleep(0.5)
    if pending:
        logs = ", ".join(str(node_dir(state.config, n) / "console.log") for n in sorted(pending))
        raise LabError(
            f"nodes {', '.join(sorted(pending))} did not answer SSH with their runtime running, none came up for "
            f"{stall:.0f} s; see {logs}"
        )
