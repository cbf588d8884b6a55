"""deploys/node.py on the lab's real containerd 1.6 nodes: config, mirror, pinning, restarts."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from cri_api.v1 import api_pb2 as cri

from podinfra.cri import Runtime, SandboxStatus, forwarded_socket

from .conftest import HEAL, LAB, PYINFRA, REFUSE, pyinfra, reset_nodes, ssh, totals

pytestmark = pytest.mark.lab
NODES = ("node1", "node2")


def deploy(lab, name: str, version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return pyinfra(lab, name, version, "--json", *extra)


def dump(ssh_config, node: str) -> str:
    return ssh(ssh_config, node, "containerd config dump").stdout


@pytest.fixture(scope="module")
def mirrored(lab):
    reset_nodes()
    for name in ("registry", "mirror"):
        result = deploy(lab, name, "1.31")
        assert result.returncode == 0, result.stderr[-2000:]
    result = deploy(lab, "mirror", "1.34")
    assert result.returncode == 0, result.stderr[-2000:]
    return lab


def sandbox(ssh_config, node: str) -> SandboxStatus:
    with forwarded_socket(ssh_config, node) as target:
        runtime = Runtime(target)
        sandbox_id = runtime.run_sandbox("deploy-probe", str(uuid.uuid4()))
        status = runtime.sandbox_status(sandbox_id)
        runtime.remove_sandbox(sandbox_id)
        return status


def test_deploy_sets_the_sandbox_image_keeps_other_settings_and_is_idempotent(mirrored, ssh_config):
    before = {node: dump(ssh_config, node) for node in NODES}
    assert all('sandbox_image = "registry.k8s.io/pause:3.6"' in text for text in before.values())
    first = deploy(mirrored, "node", "1.31")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for node in NODES:
        after = dump(ssh_config, node)
        assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in after
        assert 'config_path = "/etc/containerd/certs.d"' in after
        changed = {line.strip() for line in set(before[node].splitlines()) ^ set(after.splitlines())}
        assert changed == {
            'sandbox_image = "registry.k8s.io/pause:3.6"',
            'sandbox_image = "registry.k8s.io/pause:3.10"',
            'config_path = ""',
            'config_path = "/etc/containerd/certs.d"',
        }, "only the sandbox image and config_path may change"
        for kept in ("restrict_oom_score_adj = true", 'bin_dir = "/usr/lib/cni"'):
            assert kept in after
        flags = ssh(ssh_config, node, "cat /var/lib/kubelet/kubeadm-flags.env").stdout
        assert "--pod-infra-container-image=registry.k8s.io/pause:3.10" in flags
        modes = ssh(ssh_config, node, "stat -c '%a %U' /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
        assert modes.split() == ["600", "root"]
    second = deploy(mirrored, "node", "1.31")
    assert totals(second)["success"] == 0 and totals(second)["error"] == 0


def test_sandboxes_start_from_the_mirrored_pause_while_upstream_is_unreachable(mirrored, ssh_config):
    upstream_index = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{mirrored['upstream']}/pause:3.10"],
        capture_output=True,
        check=True,
    ).stdout
    import hashlib

    digest = "sha256:" + hashlib.sha256(upstream_index).hexdigest()
    for node in NODES:
        images = ssh(ssh_config, node, "ctr -n k8s.io images ls").stdout
        line = next(line for line in images.splitlines() if line.startswith("registry.k8s.io/pause:3.10 "))
        assert digest in line and "io.cri-containerd.pinned=pinned" in line
        assert ssh(ssh_config, node, "ip route show default").stdout == ""
        status = sandbox(ssh_config, node)
        assert status.state == "SANDBOX_READY" and status.ip
        assert status.image == "registry.k8s.io/pause:3.10"


def test_a_running_sandbox_survives_the_restart_of_a_changed_config(mirrored, ssh_config):
    with forwarded_socket(ssh_config, "node1") as target:
        runtime = Runtime(target)
        sandbox_id = runtime.run_sandbox("survivor", str(uuid.uuid4()))
        before = runtime.sandbox_status(sandbox_id)
    try:
        result = deploy(mirrored, "node", "1.34", "--limit", "node1")
        assert result.returncode == 0, result.stdout[-3000:]
        assert totals(result)["success"] > 0
        assert 'sandbox_image = "registry.k8s.io/pause:3.10.1"' in dump(ssh_config, "node1")
        flags = ssh(ssh_config, "node1", "cat /var/lib/kubelet/kubeadm-flags.env").stdout
        assert "--pod-infra-container-image=registry.k8s.io/pause:3.10.1" in flags
        with forwarded_socket(ssh_config, "node1") as target:
            after = Runtime(target).sandbox_status(sandbox_id)
        assert (after.state, after.ip, after.pid) == ("SANDBOX_READY", before.ip, before.pid)
    finally:
        with forwarded_socket(ssh_config, "node1") as target:
            Runtime(target).remove_sandbox(sandbox_id)


def test_kubelet_flag_goes_away_from_1_35(mirrored, ssh_config):
    result = deploy(mirrored, "node", "1.35", "--limit", "node1")
    assert result.returncode == 0, result.stdout[-3000:]
    flags = ssh(ssh_config, "node1", "cat /var/lib/kubelet/kubeadm-flags.env").stdout
    assert "pod-infra-container-image" not in flags


def test_containerd_that_rejects_the_new_config_gets_the_old_one_back(mirrored, ssh_config):
    """node2's containerd is made to refuse any config naming pause 3.10.1, as a broken config would."""
    ssh(ssh_config, "node2", REFUSE)
    try:
        result = deploy(mirrored, "node", "1.34", "--limit", "node2")
        assert result.returncode != 0
        assert "previous config restored" in result.stdout + result.stderr
        assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in dump(ssh_config, "node2")
        assert ssh(ssh_config, "node2", "systemctl is-active containerd").stdout.strip() == "active"
    finally:
        ssh(ssh_config, "node2", HEAL)


def test_bad_node_data_fails_before_any_host_is_touched(mirrored):
    result = deploy(mirrored, "node", "1.31", "--data", "sandbox_image_mode=rewrite")
    assert result.returncode != 0
    assert "sandbox_image_mode" in result.stdout + result.stderr
    assert "Beginning operation run" not in result.stdout + result.stderr


def test_dry_run_shows_the_change_and_changes_nothing(mirrored, ssh_config):
    before = dump(ssh_config, "node2")
    # With -y pyinfra 3.10 skips change detection, so a dry run goes without it.
    result = subprocess.run(
        [PYINFRA, "--dry", "--json", "--limit", "node2", mirrored["inventory"], "deploys/node.py"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": "1.34"},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    plan = json.loads(result.stdout[result.stdout.index("{") :])["plan"]
    changing = {op["name"] for op in plan if op["hosts_with_change"] == ["node2"]}
    assert {"containerd 1.6.20 sandbox image", "kubelet flags"} <= changing
    assert dump(ssh_config, "node2") == before


def test_local_mode_rewrites_the_sandbox_image_to_the_pinned_local_reference(mirrored, ssh_config):
    registry = next(n["address"] for n in mirrored["nodes"] if n["group"] == "registry")
    index = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{mirrored['upstream']}/pause:3.10"],
        capture_output=True,
        check=True,
    ).stdout
    import hashlib

    expected = f"{registry}:5000/pause:3.10@sha256:{hashlib.sha256(index).hexdigest()}"
    result = deploy(mirrored, "node", "1.31", "--limit", "node2", "--data", "sandbox_image_mode=local")
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        assert f'sandbox_image = "{expected}"' in dump(ssh_config, "node2")
        status = sandbox(ssh_config, "node2")
        assert status.state == "SANDBOX_READY"
        # CRI names whichever reference of that image it holds first, so compare image IDs.
        with forwarded_socket(ssh_config, "node2") as target:
            images = Runtime(target).images

            def image_id(ref: str) -> str:
                return images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=ref))).image.id

            assert image_id(status.image) == image_id(expected) != ""
    finally:
        assert deploy(mirrored, "node", "1.31", "--limit", "node2").returncode == 0


def test_a_registry_prefix_is_reached_through_override_path(mirrored, ssh_config):
    """Images kept under k8s/ in the local registry; nodes keep canonical names."""
    prefixed = ("--data", "registry_prefix=k8s")
    assert deploy(mirrored, "mirror", "1.31", *prefixed).returncode == 0
    result = deploy(mirrored, "node", "1.31", "--limit", "node1", *prefixed)
    assert result.returncode == 0, result.stdout[-3000:]
    try:
        hosts = ssh(ssh_config, "node1", "cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
        assert "/v2/k8s" in hosts and "override_path = true" in hosts
        ssh(ssh_config, "node1", "ctr -n k8s.io images rm registry.k8s.io/pause:3.10 >/dev/null")
        pulled = ssh(
            ssh_config,
            "node1",
            "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d registry.k8s.io/pause:3.10",
            check=False,
        )
        assert pulled.returncode == 0, pulled.stderr
    finally:
        assert deploy(mirrored, "node", "1.31", "--limit", "node1").returncode == 0
