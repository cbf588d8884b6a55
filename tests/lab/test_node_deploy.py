"""deploys/node.py on the lab's real containerd nodes, one per line (1.6, 1.7, 2.1, 2.2, 2.3): config, mirror,
pinning, restarts."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import uuid
from collections import Counter

import pytest

from podinfra import versions
from podinfra.check.cri import Runtime, SandboxStatus, forwarded_socket
from podinfra.deploys import json_output
from podinfra.lab.image import config_file

from .conftest import (
    HEAL,
    LAB,
    LINES,
    NODES,
    PYINFRA,
    REFUSE,
    changes,
    dump,
    pyinfra,
    reset_nodes,
    sandbox_image,
    ssh,
    totals,
)

pytestmark = pytest.mark.lab
CONTAINERD = {"1.6": "1.6.20", "1.7": "1.7.24", "2.1": "2.1.9", "2.2": "2.2.7", "2.3": "2.3.4"}


def deploy(lab, name: str, version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return pyinfra(lab, name, version, "--json", *extra)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def mirrored(lab):
    reset_nodes()
    ok(deploy(lab, "registry", "1.31"))
    for version in ("1.31", "1.34"):
        ok(deploy(lab, "mirror", version))
    return lab


def upstream_digest(lab, tag: str) -> str:
    index = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{lab['upstream']}/pause:{tag}"],
        capture_output=True,
        check=True,
    ).stdout
    return "sha256:" + hashlib.sha256(index).hexdigest()


def sandbox(ssh_config, node: str) -> SandboxStatus:
    with forwarded_socket(ssh_config, node) as target:
        runtime = Runtime(target)
        sandbox_id = runtime.run_sandbox("deploy-probe", str(uuid.uuid4()))
        status = runtime.sandbox_status(sandbox_id)
        runtime.remove_sandbox(sandbox_id)
        return status


def quoted(line: str, text: str) -> str:
    """A key = value line of `line`'s config dump: 1.x writes "basic" strings, 2.x 'literal' ones."""
    key, value = text.split(" = ")
    return f"{key} = '{value}'" if line.startswith("2.") else f'{key} = "{value}"'


def test_deploy_changes_exactly_the_sandbox_image_and_config_path_on_every_line_and_is_idempotent(mirrored, ssh_config):
    before = {node: dump(ssh_config, node) for node in NODES}
    for node, line in LINES.items():  # each line's own default
        assert sandbox_image(ssh_config, node) == versions.containerd_default_sandbox(CONTAINERD[line])
    first = ok(deploy(mirrored, "node", "1.34"))
    assert totals(first)["error"] == 0
    for node, line in LINES.items():
        after = dump(ssh_config, node)
        old, new = Counter(map(str.strip, before[node].splitlines())), Counter(map(str.strip, after.splitlines()))
        sandbox_key = "sandbox" if line.startswith("2.") else "sandbox_image"
        assert set((old - new) + (new - old)) <= {
            quoted(line, f"{sandbox_key} = {versions.containerd_default_sandbox(CONTAINERD[line])}"),
            quoted(line, f"{sandbox_key} = registry.k8s.io/pause:3.10.1"),
            quoted(line, "config_path = "),
            quoted(line, "config_path = /etc/containerd/certs.d"),
        }, f"{node}: only the sandbox image and config_path may change"
        assert quoted(line, f"{sandbox_key} = registry.k8s.io/pause:3.10.1") in new
        assert "restrict_oom_score_adj = true" in after and "/usr/lib/cni" in after
        # no kubelet on the lab's nodes: no kubelet flags file either
        assert ssh(ssh_config, node, "test -e /var/lib/kubelet/kubeadm-flags.env", check=False).returncode == 1
        modes = ssh(ssh_config, node, "stat -c '%a %U' /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
        assert modes.split() == ["600", "root"]
    second = deploy(mirrored, "node", "1.34")
    assert changes(second) == []


def test_sandboxes_start_from_the_mirrored_pause_while_upstream_is_unreachable(mirrored, ssh_config):
    ok(deploy(mirrored, "node", "1.31"))
    digest = upstream_digest(mirrored, "3.10")
    for node in NODES:
        images = ssh(ssh_config, node, "ctr -n k8s.io images ls").stdout
        row = next(line for line in images.splitlines() if line.startswith("registry.k8s.io/pause:3.10 "))
        assert digest in row and "io.cri-containerd.pinned=pinned" in row
        assert ssh(ssh_config, node, "ip route show default").stdout == ""
        status = sandbox(ssh_config, node)
        assert status.state == "SANDBOX_READY" and status.ip, node
        assert status.image == "registry.k8s.io/pause:3.10", node


def test_running_sandboxes_survive_the_restart_of_a_changed_config(mirrored, ssh_config):
    before = {}
    for node in NODES:
        with forwarded_socket(ssh_config, node) as target:
            runtime = Runtime(target)
            sandbox_id = runtime.run_sandbox("survivor", str(uuid.uuid4()))
            before[node] = runtime.sandbox_status(sandbox_id)
    try:
        result = ok(deploy(mirrored, "node", "1.34", "--data", "restart_batch=3"))
        assert totals(result)["success"] > 0
        for node in NODES:
            assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10.1"
            with forwarded_socket(ssh_config, node) as target:
                after = Runtime(target).sandbox_status(before[node].id)
            assert (after.state, after.ip, after.pid) == ("SANDBOX_READY", before[node].ip, before[node].pid), node
    finally:
        for node, status in before.items():
            with forwarded_socket(ssh_config, node) as target:
                Runtime(target).remove_sandbox(status.id)


@pytest.mark.parametrize("node", [node for node, line in LINES.items() if line.startswith("2.")])
def test_containerd_2_that_rejects_the_new_config_gets_the_old_one_back(mirrored, ssh_config, node):
    """Each 2.x node's containerd is made to refuse any config naming pause 3.10.1, as a broken config would."""
    ok(deploy(mirrored, "node", "1.31", "--limit", node))
    ssh(ssh_config, node, REFUSE)
    try:
        result = deploy(mirrored, "node", "1.34", "--limit", node)
        assert result.returncode != 0
        assert "previous config restored, containerd restarted" in result.stdout + result.stderr
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10"
        assert ssh(ssh_config, node, "systemctl is-active containerd").stdout.strip() == "active"
    finally:
        ssh(ssh_config, node, HEAL)


def test_debians_version_2_file_on_containerd_2_is_edited_as_version_2_and_named(mirrored, ssh_config):
    """Debian's containerd 2.1 package ships a version 2 config.toml; 2.x migrates it in memory."""
    stock = base64.b64encode(config_file("1.7")).decode()  # the same file, with the lab's one line
    ssh(ssh_config, "node3", f"echo {stock} | base64 -d > /etc/containerd/config.toml && systemctl restart containerd")
    try:
        result = ok(deploy(mirrored, "node", "1.34", "--limit", "node3"))
        assert "[node3]" in result.stderr and "config.toml is version 2, which containerd 2.1.9 migrates" in (
            result.stderr
        )
        on_disk = ssh(ssh_config, "node3", "cat /etc/containerd/config.toml").stdout
        assert on_disk.startswith("# Debian's stock") and "version = 2" in on_disk
        assert 'sandbox_image = "registry.k8s.io/pause:3.10.1"' in on_disk
        assert sandbox_image(ssh_config, "node3") == "registry.k8s.io/pause:3.10.1"  # the 2.x dump: version 3
        assert sandbox(ssh_config, "node3").state == "SANDBOX_READY"
        assert changes(deploy(mirrored, "node", "1.34", "--limit", "node3")) == []
    finally:
        reset_nodes()
        ok(deploy(mirrored, "node", "1.34"))


def test_bad_node_data_fails_before_any_host_is_touched(mirrored):
    result = deploy(mirrored, "node", "1.31", "--data", "sandbox_image_mode=rewrite")
    assert result.returncode != 0
    assert "sandbox_image_mode" in result.stdout + result.stderr
    assert "Beginning operation run" not in result.stdout + result.stderr


def test_a_pause_tag_not_yet_mirrored_is_refused_per_node_before_it_is_touched(mirrored, ssh_config):
    before = {node: ssh(ssh_config, node, "sha256sum /etc/containerd/config.toml").stdout for node in NODES}
    result = deploy(mirrored, "node", "1.36")  # pause 3.10.2 is not in the local registry yet
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for node in NODES:
        assert f"[{node}]" in output
    assert output.count("preflight from the control host:") == len(NODES)
    assert "pause:3.10.2 is not in the registry: mirror it first" in output
    wrong = deploy(mirrored, "node", "1.34", "--data", "registry_pull_password=wrong-password")
    assert wrong.returncode != 0 and "refused authentication" in wrong.stdout + wrong.stderr
    assert "wrong-password" not in wrong.stdout + wrong.stderr
    for node in NODES:
        assert ssh(ssh_config, node, "sha256sum /etc/containerd/config.toml").stdout == before[node], node


def test_dry_run_shows_each_files_diff_with_secrets_masked_and_changes_nothing(mirrored, ssh_config, lab):
    ssh(ssh_config, "node2", "rm -rf /etc/containerd/certs.d")
    before = dump(ssh_config, "node2")
    # With -y pyinfra 3.10 skips change detection, so a dry run goes without it.
    result = subprocess.run(
        [PYINFRA, "--dry", "--diff", "--json", "--limit", "node2", mirrored["inventory"], "deploys/node.py"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": "1.31"},
    )
    try:
        ok(result)
        plan = json_output.document(result.stdout)["plan"]
        changing = {op["name"] for op in plan if op["hosts_with_change"] == ["node2"]}
        assert "podinfra node runtime | containerd config: sandbox image and registry config_path" in changing
        diff = result.stderr
        assert "Will modify /etc/containerd/config.toml" in diff
        assert '+ sandbox_image = "registry.k8s.io/pause:3.10"' in diff.replace("    ", " ").replace("  ", " ")
        assert "Will create /etc/containerd/certs.d/registry.k8s.io/hosts.toml" in diff
        password = json.loads((lab_pki(lab) / "registry" / "users.json").read_text())["pull"]
        token = base64.b64encode(f"pull:{password}".encode()).decode()
        assert "Basic ***" in diff and token not in diff + result.stdout
        assert dump(ssh_config, "node2") == before
    finally:
        ok(deploy(mirrored, "node", "1.34", "--limit", "node2"))


def lab_pki(lab):
    from pathlib import Path

    return Path(lab["state_root"]) / LAB / "pki"


def test_local_mode_on_containerd_2_names_the_pinned_local_reference(mirrored, ssh_config):
    registry = mirrored["registries"]["local"]["address"]
    expected = f"{registry}/pause:3.10@{upstream_digest(mirrored, '3.10')}"
    ok(deploy(mirrored, "node", "1.31", "--limit", "node3", "--data", "sandbox_image_mode=local"))
    try:
        assert sandbox_image(ssh_config, "node3") == expected
        status = sandbox(ssh_config, "node3")
        assert status.state == "SANDBOX_READY"
        with forwarded_socket(ssh_config, "node3") as target:
            runtime = Runtime(target)
            found, wanted = runtime.image_status(status.image), runtime.image_status(expected)
            assert found is not None and wanted is not None and found.id == wanted.id
    finally:
        ok(deploy(mirrored, "node", "1.34", "--limit", "node3"))


def test_a_registry_prefix_is_reached_through_override_path(mirrored, ssh_config):
    """Images kept under k8s/ in the local registry; nodes keep canonical names."""
    prefixed = ("--data", "registry_prefix=k8s")
    ok(deploy(mirrored, "mirror", "1.31", *prefixed))
    ok(deploy(mirrored, "node", "1.31", "--limit", "node1", *prefixed))
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
        ok(deploy(mirrored, "node", "1.34", "--limit", "node1"))


def test_paths_with_a_space_and_a_quote_are_quoted_on_the_node(mirrored, ssh_config):
    certs = "/etc/containerd/certs d/it's"
    ok(deploy(mirrored, "node", "1.34", "--limit", "node2", "--data", f"containerd_certs_dir={certs}"))
    try:
        listed = ssh(ssh_config, "node2", 'ls "/etc/containerd/certs d/it\'s"').stdout.split()
        assert "registry.k8s.io" in listed
        assert f'config_path = "{certs}"' in dump(ssh_config, "node2")
        ssh(ssh_config, "node2", "ctr -n k8s.io images rm registry.k8s.io/pause:3.10.1 >/dev/null")
        ok(deploy(mirrored, "node", "1.34", "--limit", "node2", "--data", f"containerd_certs_dir={certs}"))
        assert "registry.k8s.io/pause:3.10.1" in ssh(ssh_config, "node2", "ctr -n k8s.io images ls -q").stdout
    finally:
        ok(deploy(mirrored, "node", "1.34", "--limit", "node2"))
        ssh(ssh_config, "node2", "rm -rf '/etc/containerd/certs d'")


FAKE_KUBELET = """\
printf '#!/bin/sh\\nexec sleep infinity\\n' > /usr/local/bin/kubelet && chmod 755 /usr/local/bin/kubelet
printf '[Service]\\nExecStart=/usr/local/bin/kubelet\\n[Install]\\nWantedBy=multi-user.target\\n' \\
  > /etc/systemd/system/kubelet.service
systemctl daemon-reload && systemctl start kubelet
"""


def kubelet_started(ssh_config) -> str:
    return ssh(ssh_config, "node3", "systemctl show -p ExecMainStartTimestampMonotonic --value kubelet").stdout


def test_the_kubelet_flags_are_written_where_a_kubelet_runs_and_it_restarts_when_they_change(mirrored, ssh_config):
    """A stand-in kubelet (a systemd unit running sleep) on node3: there is no kubelet package here."""
    ssh(ssh_config, "node3", FAKE_KUBELET)
    try:
        started = kubelet_started(ssh_config)
        ok(deploy(mirrored, "node", "1.34"))
        flags = ssh(ssh_config, "node3", "cat /var/lib/kubelet/kubeadm-flags.env").stdout
        assert "--pod-infra-container-image=registry.k8s.io/pause:3.10.1" in flags
        assert kubelet_started(ssh_config) != started, "new flags: kubelet restarted"
        for node in ("node1", "node2"):
            assert ssh(ssh_config, node, "test -e /var/lib/kubelet/kubeadm-flags.env", check=False).returncode == 1
        started = kubelet_started(ssh_config)
        assert changes(deploy(mirrored, "node", "1.34")) == []
        assert kubelet_started(ssh_config) == started, "no change: no restart"
        ok(deploy(mirrored, "node", "1.35", "--limit", "node3"))
        assert (
            "pod-infra-container-image" not in ssh(ssh_config, "node3", "cat /var/lib/kubelet/kubeadm-flags.env").stdout
        )
        assert kubelet_started(ssh_config) != started
    finally:
        ssh(
            ssh_config,
            "node3",
            "systemctl stop kubelet; rm -f /etc/systemd/system/kubelet.service /usr/local/bin/kubelet"
            " /var/lib/kubelet/kubeadm-flags.env; systemctl daemon-reload",
        )
        ok(deploy(mirrored, "node", "1.34", "--limit", "node3"))
