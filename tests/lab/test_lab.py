"""The lab, for real: nspawn nodes booted by systemd, SSH, containerd, an air gap, a pod sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import testinfra

from podinfra.check.cri import Runtime, forwarded_socket
from podinfra.deploys import json_output
from podinfra.images.registry import RegistryClient
from podinfra.lab.image import config_file

from .conftest import LAB, LAB_ARGS, LINES, NODES, UPSTREAM_PORT, leftovers, podinfra, reset_nodes, ssh

pytestmark = pytest.mark.lab


def test_status_lists_nodes_registries_key_and_inventory(lab):
    assert [(n["name"], n["group"], n["state"], n["containerd"]) for n in lab["nodes"]] == [
        ("registry", "registry", "running", "1.6"),
        *((node, "nodes", "running", line) for node, line in LINES.items()),
    ]
    versions = {n["name"]: n["version"] for n in lab["nodes"]}
    assert {n["runtime"] for n in lab["nodes"]} == {"containerd"}
    assert versions["node2"].startswith("1.7.") and versions["node3"].startswith("2.1."), versions
    assert (versions["node4"], versions["node5"]) == ("2.2.7", "2.3.4"), "the newest patch of each tarball line"
    print(f"lab up of {len(NODES)} nodes took {lab['up_seconds']}s")
    assert lab["ssh"]["user"] == "root" and os.path.exists(lab["ssh"]["key"])
    assert lab["upstream"] == f"127.0.0.1:{UPSTREAM_PORT}"
    assert lab["inventory"].endswith("inventories/lab.py")


def test_every_node_runs_systemd_sshd_and_containerd(lab, ssh_config):
    for node in lab["nodes"]:
        host = testinfra.get_host(f"ssh://{node['name']}", ssh_config=str(ssh_config))
        assert host.check_output("hostname") == node["name"]
        assert host.service("containerd").is_running
        assert host.service("ssh").is_running
        assert host.interface("host0").addresses[0] == node["address"]
        assert host.file("/usr/lib/cni/bridge").exists
        assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
        line = LINES.get(node["name"], "1.6")
        assert f" {line}." in host.check_output("containerd --version").replace(" v", " "), node["name"]
    registry = testinfra.get_host("ssh://registry", ssh_config=str(ssh_config))
    assert registry.package("docker-registry").is_installed and registry.package("nginx").is_installed
    assert lab["registry_service_at_boot"] == "inactive inactive", "deploys/registry.py turns them on, not the lab"


@pytest.mark.parametrize(("node", "version", "config_version"), [("node4", "2.2.7", 3), ("node5", "2.3.4", 4)])
def test_tarball_lines_run_their_release_binaries_and_config_version(lab, ssh_config, node, version, config_version):
    """2.2 and 2.3 come from containerd's release tarballs (PODINFRA_CONTAINERD_RELEASES): their three binaries over
    bookworm's, and the line's config file, which the daemon takes as it is (no in-memory migration)."""
    for binary in ("containerd", "ctr"):
        assert f"v{version}" in ssh(ssh_config, node, f"{binary} --version").stdout.split(), binary
    shim = ssh(ssh_config, node, "containerd-shim-runc-v2 -v").stdout
    assert f"v{version}" in shim, shim
    dump = ssh(ssh_config, node, "containerd config dump")
    assert dump.stdout.startswith(f"version = {config_version}\n"), dump.stdout[:200]
    assert "restrict_oom_score_adj = true" in dump.stdout and "bin_dirs = ['/usr/lib/cni']" in dump.stdout
    assert "migrat" not in dump.stderr.lower(), dump.stderr


def test_reset_puts_each_nodes_own_lines_config_back(lab, ssh_config):
    for node in NODES:
        ssh(ssh_config, node, "echo '# changed' >> /etc/containerd/config.toml")
    reset_nodes()
    for node, line in LINES.items():
        assert ssh(ssh_config, node, "cat /etc/containerd/config.toml").stdout == config_file(line).decode(), node


def test_pyinfra_reaches_the_nodes_through_the_lab_inventory(lab):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "-y", "--json", lab["inventory"], "exec", "--", "hostname"],
        capture_output=True,
        text=True,
        env={**os.environ, "PODINFRA_LAB": LAB},
    )
    assert result.returncode == 0, result.stderr
    totals = json_output.totals(result.stdout)
    assert totals["success"] == len(NODES) + 1 and totals["error"] == 0


def test_upstream_serves_multi_platform_pause_images(lab):
    upstream = RegistryClient(f"http://{lab['upstream']}")
    for tag in ("3.9", "3.10", "3.10.1"):
        index = json.loads(upstream.get_manifest("pause", tag).data)
        assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}


def test_nodes_are_air_gapped(lab, ssh_config):
    gateway = lab["bridge"]["address"].split("/")[0]
    port = lab["upstream"].split(":")[1]
    for node in NODES:
        assert ssh(ssh_config, node, "ip route show default").stdout == ""
        assert ssh(ssh_config, node, "ip route get 192.0.2.1", check=False).returncode != 0
        blocked = ssh(ssh_config, node, f"curl -sS -m 3 http://{gateway}:{port}/v2/", check=False)
        assert blocked.returncode != 0, "upstream must not be reachable from a node"


# How each line's config names the sandbox image (appended to the lab's file: a table of its own).
SANDBOX_IMAGE = {
    1: "sed -i '/restrict_oom_score_adj/a\\    sandbox_image = \"{image}\"' /etc/containerd/config.toml",
    2: "printf '%s\\n' \"[plugins.'io.containerd.cri.v1.images'.pinned_images]\" \"  sandbox = '{image}'\""
    " >> /etc/containerd/config.toml",
}


@pytest.mark.parametrize("node", NODES)
def test_a_pod_sandbox_starts_from_the_upstream_pause_image(lab, ssh_config, node):
    """On every line. Upstream is carried to the node's localhost:5000 by an SSH reverse forward, for this test only."""
    image = "localhost:5000/pause:3.10"
    reset_nodes()
    major = int(LINES[node].split(".")[0])
    ssh(ssh_config, node, SANDBOX_IMAGE[major].format(image=image) + " && systemctl restart containerd")
    forward = subprocess.Popen(
        ["ssh", "-F", str(ssh_config), "-N", "-o", "ExitOnForwardFailure=yes", "-R", f"5000:{lab['upstream']}", node]
    )
    try:
        time.sleep(1)
        with forwarded_socket(ssh_config, node) as target:
            runtime = Runtime(target)
            name, version = runtime.version()
            assert name == "containerd" and version.lstrip("v").startswith(f"{LINES[node]}."), version
            sandbox = runtime.run_sandbox("lab-probe", str(uuid.uuid4()))
            try:
                status = runtime.sandbox_status(sandbox)
                assert status.state == "SANDBOX_READY"
                assert status.ip.startswith("10.244.")
                assert status.image == image
                proc = ssh(ssh_config, node, f"cat /proc/{status.pid}/comm; grep ^Uid /proc/{status.pid}/status").stdout
                assert proc.split()[:3] == ["pause", "Uid:", "65535"]
            finally:
                runtime.remove_sandbox(sandbox)
            assert sandbox not in runtime.sandboxes()
    finally:
        forward.terminate()
        forward.wait()
        reset_nodes()


def test_up_twice_keeps_the_running_nodes(lab):
    before = json.loads(podinfra("lab", "status", "--name", LAB, "--json").stdout)
    again = podinfra("lab", "up", *LAB_ARGS)
    assert "booting" not in again.stderr
    status = json.loads(podinfra("lab", "status", "--name", LAB, "--json").stdout)
    assert [n["pid"] for n in status["nodes"]] == [n["pid"] for n in before["nodes"]]


def test_down_after_a_crash_leaves_nothing_behind(lab):
    """A second, one-node lab whose nspawn and registry die hard and whose state file is lost."""
    name, root = "crash", "/var/lib/podinfra/crash"
    podinfra("lab", "down", "--name", name)
    podinfra("lab", "up", "--name", name, "--nodes", "1", "--subnet", "10.213.2.0/24", "--upstream-port", "5102")
    status = json.loads(podinfra("lab", "status", "--name", name, "--json").stdout)
    for node in status["nodes"]:
        os.kill(node["pid"], 9)
    subprocess.run(["pkill", "-9", "-f", f"docker-registry serve {root}/"], check=False)
    os.unlink(f"{root}/state.json")
    podinfra("lab", "down", "--name", name)
    assert leftovers(root, status["bridge"]["name"]) == []
