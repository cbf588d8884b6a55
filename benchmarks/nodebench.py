"""Node configuration, two ways to the same end state: `deploys/node.py` (pyinfra) and `ansible/node.yml`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from labtools import INVENTORY, PYINFRA, SANDBOX_IMAGE, Lab, progress, run

from podinfra import versions
from podinfra.deploys import json_output

HERE = Path(__file__).resolve().parent
ANSIBLE_DIR = HERE / "ansible"
PLAYBOOK = str(ANSIBLE_DIR / "node.yml")
ANSIBLE_PLAYBOOK = str(Path(PYINFRA).parent / "ansible-playbook")
TOOLS = ("podinfra", "ansible")
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass
class Outcome:
    seconds: float
    changed: int  # operations (pyinfra) or tasks (Ansible) that changed something, summed over hosts
    failed: int
    log: str


def ansible_inventory(lab: Lab, workdir: Path) -> Path:
    """An Ansible inventory of the lab's nodes: SSH through the lab's ssh_config (its key, its pinned
    known_hosts), the same settings the pyinfra inventory gives deploys/node.py, and each node's containerd
    line, which picks its config.toml's shape (as Kubespray's `containerd_version` does)."""
    users = json.loads((lab.pki / lab.registry.name / "users.json").read_text())
    registry = f"{lab.registry.address}:5000"
    inventory = {
        "nodes": {
            "hosts": {n.name: {"ansible_host": n.name, "containerd_line": n.containerd} for n in lab.nodes},
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_common_args": f"-F {lab.state.ssh_config}",
                "sandbox_image": SANDBOX_IMAGE,
                "local_registry": registry,
                "registry_ca": str(lab.pki / "ca.crt"),
                "registry_pull_user": "pull",
                "registry_pull_password": users["pull"],
                "mirrored_registries": ["registry.k8s.io"],
                "kubelet_pause_flag": versions.kubelet_takes_pause_flag("1.31"),
            },
        }
    }
    path = workdir / "ansible-inventory.yml"
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    return path


def apply_podinfra(lab: Lab, names: list[str], restart_batch: str | None = None) -> Outcome:
    # restart_batch = all nodes unless asked: containerd restarts everywhere at once, as Ansible's handler
    # does (podinfra's own default is 1 node at a time).
    limits = [arg for name in names for arg in ("--limit", name)]
    batch = restart_batch or str(len(names))
    cmd = [PYINFRA, "-y", "--json", *limits, INVENTORY, "deploys/node.py", "--data", f"restart_batch={batch}"]
    start = time.perf_counter()
    result = run(cmd, lab.env)
    seconds = time.perf_counter() - start
    log = result.stdout + result.stderr
    try:
        totals = json_output.totals(result.stdout)
    except ValueError:
        return Outcome(seconds, 0, max(1, result.returncode), log)
    return Outcome(seconds, totals["success"], totals["error"] + (result.returncode != 0), log)


def apply_ansible(lab: Lab, names: list[str], inventory: Path) -> Outcome:
    # A fresh ControlPath directory per run: every run opens its own SSH connections, as pyinfra's
    # do; masters left by the run are closed right after it.
    control = Path(tempfile.mkdtemp(prefix="bench-ansible-cp-"))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
    }
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), "--limit", ",".join(names), PLAYBOOK]
    start = time.perf_counter()
    result = run(cmd, env)
    seconds = time.perf_counter() - start
    for socket in control.iterdir():
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket}", "x"], capture_output=True)
    shutil.rmtree(control, ignore_errors=True)
    recap = _RECAP.findall(result.stdout)
    changed = sum(int(c) for _, c, _, _ in recap)
    failed = sum(int(u) + int(f) for _, _, u, f in recap) + (result.returncode != 0 or len(recap) != len(names))
    return Outcome(seconds, changed, failed, result.stdout + result.stderr)


def apply(tool: str, lab: Lab, names: list[str], inventory: Path, restart_batch: str | None = None) -> Outcome:
    """One run of `tool` on `names`; `restart_batch` (podinfra only) as deploys/node.py takes it, all by default."""
    progress(f"  {tool}: {len(names)} node(s)")
    podinfra = tool == "podinfra"
    outcome = apply_podinfra(lab, names, restart_batch) if podinfra else apply_ansible(lab, names, inventory)
    if outcome.failed:
        raise RuntimeError(f"{tool} on {len(names)} nodes failed:\n{outcome.log[-4000:]}")
    return outcome
