"""Faults on the lab's containerd nodes (1.6 to 2.3): a node down, containerd refusing its config
mid-rollout, a killed deploy, a daemon running an older config than its files, a node's credential
used to push, one-line errors, and secrets kept out of what operators see."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podinfra.check.cri import CRIError, Runtime, forwarded_socket

from .conftest import (
    HEAL,
    LAB,
    LAB_ARGS,
    LINES,
    NODES,
    REFUSE,
    REGISTRY,
    changes,
    podinfra,
    pyinfra,
    reset_nodes,
    sandbox_image,
    ssh,
    totals,
)

pytestmark = pytest.mark.lab
ENV = {**os.environ, "PODINFRA_LAB": LAB}


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def heal(ssh_config) -> None:
    for node in NODES:
        ssh(ssh_config, node, f"test -x /usr/bin/containerd.real && {HEAL} || true")


@pytest.fixture(scope="module")
def fleet(lab, ssh_config):
    """Registry, pause 3.10 and 3.10.1 mirrored, nodes on Kubernetes 1.31; put back after each test."""
    reset_nodes()
    for deploy, version in (("registry", "1.31"), ("mirror", "1.31"), ("mirror", "1.34"), ("node", "1.31")):
        ok(pyinfra(lab, deploy, version))
    yield lab
    heal(ssh_config)
    ok(pyinfra(lab, "node", "1.31"))


@pytest.fixture
def baseline(fleet, ssh_config):
    yield fleet
    heal(ssh_config)
    ok(pyinfra(fleet, "node", "1.31"))


def check(lab, *extra: str, version: str = "1.31") -> tuple[subprocess.CompletedProcess[str], dict]:
    report = Path(f"/tmp/podinfra-faults-{os.getpid()}.json")
    found = subprocess.run(
        [sys.executable, "-m", "podinfra.cli", "check", lab["inventory"], "--json", str(report), *extra],
        capture_output=True,
        text=True,
        env={**ENV, "PODINFRA_KUBERNETES_VERSION": version},
    )
    doc = json.loads(report.read_text()) if report.exists() else {}
    report.unlink(missing_ok=True)
    return found, doc


def results(doc: dict, node: str) -> dict[str, dict]:
    control = next(c for c in doc["Controls"] if c["node"] == node)
    return {r["test_number"]: r for r in control["tests"][0]["results"]}


def test_a_failure_in_a_batch_leaves_the_other_nodes_of_that_batch_configured(baseline, ssh_config):
    ssh(ssh_config, "node1", REFUSE)
    # Only the nodes are active, so pyinfra's one batch of as many holds them all.
    batch = f"restart_batch={len(NODES)}"
    result = pyinfra(baseline, "node", "1.34", "--data", batch, *[f"--limit={n}" for n in NODES])
    assert result.returncode != 0
    assert "previous config restored" in result.stdout + result.stderr
    assert sandbox_image(ssh_config, "node1") == "registry.k8s.io/pause:3.10"
    for node in NODES[1:]:
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10.1", result.stdout[-4000:]
    for node in NODES:
        assert ssh(ssh_config, node, "systemctl is-active containerd").stdout.strip() == "active"


def test_no_further_batches_once_more_nodes_failed_than_allowed(baseline, ssh_config):
    """Every node would refuse; batches of 1 in pyinfra's (unordered) host order: whichever goes first
    fails and is rolled back, the later ones are not touched."""
    for node in NODES:
        ssh(ssh_config, node, REFUSE)
    result = pyinfra(
        baseline, "node", "1.34", "--data", "restart_batch=1", "--data", "max_failed_nodes=0",
        *[f"--limit={n}" for n in NODES],
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("previous config restored") == 1, output[-4000:]
    stopped = "rollout stopped after 1 failed node(s) in earlier batches (max_failed_nodes=0)"
    assert output.count(stopped) == len(NODES) - 1
    for node in NODES:
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10"
        on_disk = ssh(ssh_config, node, "cat /etc/containerd/config.toml").stdout
        assert "pause:3.10.1" not in on_disk, "a stopped node keeps its previous config on disk too"


def test_an_unreachable_node_fails_alone_and_is_named(baseline, ssh_config, lab):
    node2 = next(n for n in lab["nodes"] if n["name"] == "node2")
    os.kill(node2["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{node2['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        result = pyinfra(baseline, "node", "1.34")
        assert result.returncode != 0
        assert "node2" in result.stdout + result.stderr
        for node in ("node1", "node3"):
            assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10.1"
        found, doc = check(lab, "--data", "check_probe_image=false", version="1.34")
        assert found.returncode == 1, found.stdout + found.stderr
        status = {c["node"]: c["total_fail"] for c in doc["Controls"]}
        assert status["node1"] == status["node3"] == 0 and status["node2"] == 9
        assert "node2" in found.stdout
    finally:
        podinfra("lab", "up", *LAB_ARGS)


def test_a_killed_deploy_leaves_whole_configs_and_a_rerun_converges(baseline, ssh_config):
    run = pyinfra(baseline, "node", "1.34", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in run.stdout:
        if "Starting operation: podinfra node runtime | containerd runs its config" in line:
            break  # every config is written; no containerd has restarted yet
    run.kill()
    run.wait()
    for node in NODES:
        # Whatever the moment of the kill, the file parses and containerd runs with it.
        assert sandbox_image(ssh_config, node) in ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10.1")
    ok(pyinfra(baseline, "node", "1.34"))
    for node in NODES:
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10.1"
    found, doc = check(baseline, "--data", "check_probe_image=false", version="1.34")
    assert found.returncode == 0, found.stdout
    assert changes(pyinfra(baseline, "node", "1.34", "--json")) == []


STALE = (
    "cp -p /etc/containerd/config.toml /tmp/good.toml"
    " && sed -i -E \"s#(sandbox(_image)? = )[\\\"']registry.k8s.io/pause:3.10[\\\"']#\\1'registry.k8s.io/pause:3.9'#\""
    " /etc/containerd/config.toml && systemctl restart containerd && sleep 2"
    " && cp /tmp/good.toml /etc/containerd/config.toml && touch /etc/containerd/config.toml"
)


def test_a_daemon_running_an_older_config_than_its_file_fails_check_2_and_the_deploy_restarts_it(baseline, ssh_config):
    """An operator's edit in progress: the wrong image restarted in, the right file put back, no restart."""
    stale = ["node1", *(node for node, line in LINES.items() if line.startswith("2."))]  # 1.6 and every 2.x line
    limits = [arg for node in stale for arg in ("--limit", node)]
    for node in stale:
        ssh(ssh_config, node, STALE)
    found, doc = check(baseline, *limits, "--data", "check_probe_image=false")
    assert found.returncode == 1, found.stdout
    assert {node: results(doc, node)["2"]["status"] for node in stale} == dict.fromkeys(stale, "FAIL")
    # containerd 1.x says through its CRI what it runs; 2.x does not, so the daemon's start time speaks.
    one_x = results(doc, "node1")["2"]
    assert "restart pending: the daemon runs 'registry.k8s.io/pause:3.9', the file says" in one_x["actual_value"]
    for node in stale[1:]:
        two_x = results(doc, node)["2"]
        assert "restart pending: the daemon runs the config it read at start, the file says" in two_x["actual_value"]
        assert "changed after containerd started" in two_x["actual_value"] and "restart" in two_x["remediation"]
    converged = ok(pyinfra(baseline, "node", "1.31", "--json"))
    assert totals(converged)["success"] >= len(stale), "the nodes restarted though no file changed in this run"
    found, doc = check(baseline, *limits, "--data", "check_probe_image=false")
    assert found.returncode == 0, found.stdout
    assert changes(pyinfra(baseline, "node", "1.31", "--json")) == []


# An imports drop-in at the key path of the node's line: version 2's sandbox_image on 1.x, version 3's
# pinned_images.sandbox on 2.x (containerd 2.3 merges a version 3 import into its version 4 file).
OVERRIDES = {
    "1.7": 'version = 2\\n[plugins."io.containerd.grpc.v1.cri"]\\n  sandbox_image = "registry.k8s.io/pause:3.9"\\n',
    "2.3": 'version = 3\\n[plugins."io.containerd.cri.v1.images".pinned_images]\\n'
    '  sandbox = "registry.k8s.io/pause:3.9"\\n',
}


@pytest.mark.parametrize("node", [node for node, line in LINES.items() if line in OVERRIDES])
def test_an_imports_drop_in_that_overrides_the_sandbox_image_fails_the_node_by_name(baseline, ssh_config, node):
    ssh(
        ssh_config,
        node,
        "mkdir -p /etc/containerd/conf.d && printf '"
        + OVERRIDES[LINES[node]]
        + "' > /etc/containerd/conf.d/90-other.toml"
        " && sed -i '1a imports = [\"/etc/containerd/conf.d/*.toml\"]' /etc/containerd/config.toml"
        " && systemctl restart containerd",
    )
    try:
        result = pyinfra(baseline, "node", "1.31", "--limit", node)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert re.search(
            rf"\[{node}\] +containerd's effective config \(config dump\) has .*sandbox(_image)? = "
            r"'registry.k8s.io/pause:3.9', not 'registry.k8s.io/pause:3.10'",
            output,
        ), output[-3000:]
    finally:
        ssh(ssh_config, node, "rm -rf /etc/containerd/conf.d && sed -i '/^imports = /d' /etc/containerd/config.toml")


def test_the_nodes_credential_cannot_push_and_pulls_still_work(baseline, ssh_config):
    hosts = ssh(ssh_config, "node3", "cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
    authorization = re.search(r'Authorization = "([^"]+)"', hosts)
    assert authorization, "the node's hosts.toml carries its pull credential"
    registry = baseline["registries"]["local"]["address"]

    def curl(path: str, *options: str) -> str:  # on the node, with the node's own credential
        command = ["curl", "-sS", "--cacert", "/etc/podinfra/registry-ca.crt", "-o", "/dev/null"]
        command += ["-H", f"Authorization: {authorization[1]}", *options, f"https://{registry}/v2/{path}"]
        return ssh(ssh_config, "node3", shlex.join(command)).stdout

    index = ("-D", "-", "-H", "Accept: application/vnd.oci.image.index.v1+json")
    digest = re.search(r"(?i)docker-content-digest: (\S+)", curl("pause/manifests/3.10", *index))
    assert digest
    for method, path in (
        ("POST", "pause/blobs/uploads/"),
        ("PUT", "pause/manifests/3.10"),
        ("DELETE", "pause/manifests/3.10"),
    ):
        assert curl(path, "-X", method, "-w", "%{http_code}") == "403", method
    assert digest[1] in curl("pause/manifests/3.10", *index), "the tag still names the same image"
    ssh(ssh_config, "node3", "ctr -n k8s.io images rm registry.k8s.io/pause:3.10 >/dev/null")
    pulled = ssh(
        ssh_config,
        "node3",
        "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d registry.k8s.io/pause:3.10 >/dev/null",
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr


def test_cri_failures_are_one_line_naming_the_rpc_the_code_and_the_runtimes_message(baseline, ssh_config):
    for node in NODES:
        with forwarded_socket(ssh_config, node) as target, pytest.raises(CRIError) as raised:
            Runtime(target).pull("registry.k8s.io/pause:0.0-absent")
        message = str(raised.value)
        assert message.startswith("PullImage: ") and "\n" not in message, message
        assert "_InactiveRpcError" not in message and "registry.k8s.io/pause:0.0-absent" in message


def test_a_failed_copy_in_the_mirror_deploy_is_one_line_not_a_traceback(baseline, ssh_config):
    ssh(ssh_config, "registry", "systemctl stop nginx")
    try:
        result = pyinfra(baseline, "mirror", "1.36")  # pause 3.10.2: not in the registry, so a copy is due
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "Unexpected error in Python callback" not in output and "Traceback" not in output
        assert re.search(r"\[registry\] +registry \S+ is unreachable", output), output[-2000:]
    finally:
        ssh(ssh_config, "registry", "systemctl start nginx")


def test_credentials_never_reach_output_and_their_files_are_root_only(baseline, ssh_config):
    users = json.loads(Path(f"/var/lib/podinfra/{LAB}/pki/registry/users.json").read_text())
    secrets = [users["pull"], users["push"], base64.b64encode(f"pull:{users['pull']}".encode()).decode()]
    outputs = [pyinfra(baseline, "node", "1.34", *flags) for flags in ((), ("-v",), ("--json",), ("--dry", "--diff"))]
    outputs.append(pyinfra(baseline, "mirror", "1.31", "-v"))
    for result in outputs:
        for secret in secrets:
            assert secret not in result.stdout + result.stderr
    for node in NODES:
        for path in (
            "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
            f"/etc/containerd/certs.d/{REGISTRY}/hosts.toml",
        ):
            assert ssh(ssh_config, node, f"stat -c '%a %U %G' {path}").stdout.split() == ["600", "root", "root"]
