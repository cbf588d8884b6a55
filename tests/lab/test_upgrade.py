"""An upgrade from Kubernetes 1.31 to 1.36 on the lab: the new pause mirrored while the fleet is mixed,
nodes rolled with their running sandboxes untouched, the check telling which sandboxes still run the
old pause (INFO), and the old pause unpinned once none does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from podinfra.check.cri import Runtime, forwarded_socket

from .conftest import LAB, LINES, NODES, PYINFRA, changes, reset_nodes, sandbox_image, ssh, totals

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


def inventory(path: Path, versions: dict[str, str]) -> Path:
    """The lab inventory, each node with its own kubernetes_version (a fleet mid-upgrade)."""
    path.write_text(
        f"import runpy\n_lab = runpy.run_path({str(REPO / 'inventories/lab.py')!r})\n"
        f"_versions = {versions!r}\n"
        "registry = _lab['registry']\n"
        "nodes = [(name, {**data, 'kubernetes_version': _versions[name]}) for name, data in _lab['nodes']]\n"
    )
    return path


def run(inventory_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": "1.31"}
    return subprocess.run([*args[:1], *args[1:]], capture_output=True, text=True, env=env, cwd=REPO)


def deploy(inventory_file: Path, name: str) -> subprocess.CompletedProcess[str]:
    result = run(inventory_file, PYINFRA, "-y", "--json", str(inventory_file), f"deploys/{name}.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check(inventory_file: Path, report: Path) -> dict:
    found = run(
        inventory_file, sys.executable, "-m", "podinfra.cli", "check", str(inventory_file), "--json", str(report)
    )
    assert found.returncode == 0, found.stdout + found.stderr
    return json.loads(report.read_text())


def statuses(doc: dict, check_id: str) -> dict[str, str]:
    return {
        c["node"]: next(r["status"] for r in c["tests"][0]["results"] if r["test_number"] == check_id)
        for c in doc["Controls"]
    }


def pauses(ssh_config, node: str) -> dict[str, bool]:
    listing = ssh(ssh_config, node, "ctr -n k8s.io images ls | grep ^registry.k8s.io/pause:").stdout
    return {row.split()[0]: "io.cri-containerd.pinned=pinned" in row for row in listing.splitlines()}


def test_an_upgrade_from_1_31_to_1_36(lab, ssh_config, tmp_path):
    reset_nodes()
    old = inventory(tmp_path / "old.py", dict.fromkeys(NODES, "1.31"))
    for name in ("registry", "mirror", "node"):
        deploy(old, name)
    workloads = {}
    for node in NODES:  # a pod on every node, made before the upgrade
        with forwarded_socket(ssh_config, node) as target:
            workloads[node] = Runtime(target).run_sandbox("app", str(uuid.uuid4()))

    # Mid-upgrade: node1 still on 1.31, the others on 1.36; the mirror takes both tags.
    upgraded = NODES[1:]
    mixed = inventory(tmp_path / "mixed.py", {"node1": "1.31", **dict.fromkeys(upgraded, "1.36")})
    mirrored = deploy(mixed, "mirror")
    assert totals(mirrored)["success"] == 1, "pause 3.10.2 copied; 3.10 was there"
    rolled = deploy(mixed, "node")
    assert totals(rolled)["error"] == 0
    assert sandbox_image(ssh_config, "node1") == "registry.k8s.io/pause:3.10"
    for node in upgraded:
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10.2"
        assert pauses(ssh_config, node) == {"registry.k8s.io/pause:3.10": True, "registry.k8s.io/pause:3.10.2": True}
    for node, sandbox_id in workloads.items():  # running sandboxes untouched
        with forwarded_socket(ssh_config, node) as target:
            assert Runtime(target).sandbox_status(sandbox_id).state == "SANDBOX_READY", node
    doc = check(mixed, tmp_path / "mixed.json")
    assert statuses(doc, "9") == {"node1": "PASS", **dict.fromkeys(upgraded, "INFO")}
    info = next(
        r for c in doc["Controls"] if c["node"] == "node3" for r in c["tests"][0]["results"] if r["test_number"] == "9"
    )
    assert "1 sandbox(es) still on another pause: default/app: registry.k8s.io/pause:3.10" in info["actual_value"]
    # Kubernetes 1.36 needs containerd 2.x: the 1.7 node is told so
    assert statuses(doc, "1") == {
        "node1": "PASS",
        **{node: "WARN" if LINES[node] < "2" else "PASS" for node in upgraded},
    }

    # The pods are recreated elsewhere; the fleet finishes the upgrade; the old pause is let go.
    for node, sandbox_id in workloads.items():
        with forwarded_socket(ssh_config, node) as target:
            Runtime(target).remove_sandbox(sandbox_id)
    new = inventory(tmp_path / "new.py", dict.fromkeys(NODES, "1.36"))
    deploy(new, "node")
    for node in NODES:
        assert pauses(ssh_config, node) == {"registry.k8s.io/pause:3.10": False, "registry.k8s.io/pause:3.10.2": True}
    doc = check(new, tmp_path / "new.json")
    assert set(statuses(doc, "9").values()) == {"PASS"}
    assert changes(deploy(new, "node")) == []
