"""A deploy that finds no nodes stops the run with one line naming the fix (pyinfra's own CLI, a local host)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PYINFRA = str(Path(sys.executable).parent / "pyinfra")


def run(tmp_path: Path, deploy: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inventory.py").write_text('k8s_registry = [("@local", {"kubernetes_version": "1.31"})]\n')
    (tmp_path / "deploy.py").write_text(f"from podinfra.deploys import pause_mirror, registry_then_nodes\n\n{deploy}\n")
    command = [PYINFRA, "-y", "inventory.py", "deploy.py", *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.parametrize(
    "deploy, args, fix",
    [
        ("pause_mirror()", (), "pause_mirror(nodes=GROUP) or --data podinfra_node_group=GROUP"),
        ('pause_mirror(nodes="k8s_workers")', (), "pause_mirror(nodes=GROUP)"),
        ("pause_mirror()", ("--data", "podinfra_node_group=workers"), "--data podinfra_node_group=GROUP"),
        ('registry_then_nodes(registry="k8s_registry")', (), "registry_then_nodes(nodes=GROUP)"),
    ],
)
def test_pause_mirror_without_nodes_stops_with_in_groups_line(tmp_path, deploy, args, fix):
    result = run(tmp_path, deploy, *args)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "has no hosts (the inventory's groups: " in output and fix in output, output
    assert "Traceback" not in output and "Beginning operation run" not in output, output
