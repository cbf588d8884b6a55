"""Faults on the lab: a node down, containerd refusing its config mid-rollout, a killed deploy,
and secrets kept out of what operators see."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import HEAL, LAB, REFUSE, podinfra, pyinfra, reset_nodes, ssh, totals

pytestmark = pytest.mark.lab


def sandbox_image(ssh_config, node: str) -> str:
    dump = ssh(ssh_config, node, "containerd config dump | grep sandbox_image").stdout
    return dump.split('"')[1]


@pytest.fixture(scope="module")
def fleet(lab, ssh_config):
    """Registry, pause 3.10 and 3.10.1 mirrored, nodes on Kubernetes 1.31; put back after each test."""
    reset_nodes()
    for deploy, version in (("registry", "1.31"), ("mirror", "1.31"), ("mirror", "1.34"), ("node", "1.31")):
        result = pyinfra(lab, deploy, version)
        assert result.returncode == 0, result.stdout[-3000:]
    yield lab
    for node in ("node1", "node2"):
        ssh(ssh_config, node, f"test -x /usr/bin/containerd.real && {HEAL} || true")
    assert pyinfra(lab, "node", "1.31").returncode == 0


@pytest.fixture
def baseline(fleet, ssh_config):
    yield fleet
    for node in ("node1", "node2"):
        ssh(ssh_config, node, f"test -x /usr/bin/containerd.real && {HEAL} || true")
    result = pyinfra(fleet, "node", "1.31")
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_failure_in_a_batch_leaves_the_other_nodes_of_that_batch_configured(baseline, ssh_config):
    ssh(ssh_config, "node1", REFUSE)
    # Only the two nodes are active, so pyinfra's one batch of 2 holds both.
    result = pyinfra(baseline, "node", "1.34", "--data", "restart_batch=2", "--limit", "node1", "--limit", "node2")
    assert result.returncode != 0
    assert "previous config restored" in result.stdout + result.stderr
    assert sandbox_image(ssh_config, "node1") == "registry.k8s.io/pause:3.10"
    assert sandbox_image(ssh_config, "node2") == "registry.k8s.io/pause:3.10.1", result.stdout[-4000:]
    for node in ("node1", "node2"):
        assert ssh(ssh_config, node, "systemctl is-active containerd").stdout.strip() == "active"


def test_no_further_batches_once_more_nodes_failed_than_allowed(baseline, ssh_config):
    """Both nodes would refuse; batches of 1 in pyinfra's (unordered) host order: whichever goes
    first fails and is rolled back, the later one is not touched."""
    for node in ("node1", "node2"):
        ssh(ssh_config, node, REFUSE)
    result = pyinfra(
        baseline, "node", "1.34", "--data", "restart_batch=1", "--data", "max_failed_nodes=0",
        "--limit", "node1", "--limit", "node2",
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("previous config restored") == 1, output[-4000:]
    assert output.count("rollout stopped after 1 failed node(s) in earlier batches (max_failed_nodes=0)") == 1
    for node in ("node1", "node2"):
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10"
        on_disk = ssh(ssh_config, node, "grep sandbox_image /etc/containerd/config.toml").stdout
        assert 'pause:3.10"' in on_disk, "a stopped node keeps its previous config on disk too"


def test_an_unreachable_node_fails_alone_and_is_named(baseline, ssh_config, lab, tmp_path):
    node2 = next(n for n in lab["nodes"] if n["name"] == "node2")
    os.kill(node2["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{node2['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        result = pyinfra(baseline, "node", "1.34")
        assert result.returncode != 0
        assert "node2" in result.stdout + result.stderr
        assert sandbox_image(ssh_config, "node1") == "registry.k8s.io/pause:3.10.1"
        report = tmp_path / "check.json"
        check = subprocess.run(
            [sys.executable, "-m", "podinfra.cli", "check", lab["inventory"], "--json", str(report),
             "--data", "check_probe_image=false"],
            capture_output=True, text=True,
            env={**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": "1.34"},
        )  # fmt: skip
        assert check.returncode == 1, check.stdout + check.stderr
        rows = {n["node"]: n for n in json.loads(report.read_text())["nodes"]}
        assert rows["node1"]["status"] == "PASS" and rows["node2"]["status"] == "FAIL"
        assert "node2" in check.stdout
    finally:
        podinfra("lab", "up", "--name", LAB, "--nodes", "2", "--subnet", "10.213.1.0/24", "--upstream-port", "5101")


def test_a_killed_deploy_leaves_whole_configs_and_a_rerun_converges(baseline, ssh_config):
    run = pyinfra(baseline, "node", "1.34", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in run.stdout:
        if "Starting operation: Restart containerd" in line:
            break
    run.kill()
    run.wait()
    for node in ("node1", "node2"):
        # Whatever the moment of the kill, the file parses and containerd runs with it.
        assert sandbox_image(ssh_config, node) in ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10.1")
    again = pyinfra(baseline, "node", "1.34")
    assert again.returncode == 0, again.stdout[-3000:]
    for node in ("node1", "node2"):
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10.1"
    settled = pyinfra(baseline, "node", "1.34", "--json")
    assert totals(settled)["success"] == 0


def test_credentials_never_reach_output_and_their_files_are_root_only(baseline, ssh_config):
    users = json.loads(Path(f"/var/lib/podinfra/{LAB}/pki/registry/users.json").read_text())
    secrets = [users["pull"], users["push"], base64.b64encode(f"pull:{users['pull']}".encode()).decode()]
    outputs = [pyinfra(baseline, "node", "1.34", *flags) for flags in ((), ("-v",), ("--json",), ("--dry",))]
    outputs.append(pyinfra(baseline, "mirror", "1.31", "-v"))
    for result in outputs:
        for secret in secrets:
            assert secret not in result.stdout + result.stderr
    for node in ("node1", "node2"):
        for path in (
            "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
            "/etc/containerd/certs.d/10.213.1.2:5000/hosts.toml",
        ):
            assert ssh(ssh_config, node, f"stat -c '%a %U %G' {path}").stdout.split() == ["600", "root", "root"]
