"""`podinfra check` on the lab's real nodes: every check passes after the deploys; each drift fails
exactly its node and its check; an interrupted probe leaves no sandbox behind.

Other modules change the nodes (versions, broken containerd, resets), so this one first brings the
fleet to a known state itself: registry, mirror (pause and the probe image), node for Kubernetes 1.31.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from podinfra.checks import PROBE_LABELS, PROBE_NAMESPACE
from podinfra.cri import Runtime, forwarded_socket
from podinfra.lab import probe_image
from podinfra.registry import RegistryClient

from .conftest import LAB, PODINFRA, pyinfra, ssh

pytestmark = pytest.mark.lab
NODES = ("node1", "node2")
ENV = {**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": "1.31"}
# Probe sandboxes carry their uid as this label (tests/node/probes.py); the bystanders below do not.
PROBE_FILTER = 'labels.\\"podinfra.io/probe-uid\\"'


def deploy(lab, name: str, *extra: str) -> None:
    result = pyinfra(lab, name, "1.31", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def check_command(lab, report: Path, *extra: str) -> list[str]:
    gateway = lab["bridge"]["address"].split("/")[0]
    upstream_port = lab["upstream"].split(":")[1]
    return [*PODINFRA, "check", lab["inventory"], "--data", f"airgap_probe={gateway}:{upstream_port}"] + [
        "--json",
        str(report),
        *extra,
    ]


def run_check(lab, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    result = subprocess.run(check_command(lab, report, *extra), capture_output=True, text=True, env=ENV)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(report.read_text()), result.stdout


def statuses(report: dict) -> dict[str, dict[str, str]]:
    return {n["node"]: {c["id"]: c["status"] for c in n["checks"]} for n in report["nodes"]}


@pytest.fixture(scope="module")
def fleet(lab):
    probe_image.publish(RegistryClient(f"http://{lab['upstream']}"))  # lab up does it too; a lab up before may not
    deploy(lab, "registry")
    deploy(lab, "mirror", "--data", f'mirror_images=["{probe_image.REFERENCE}"]')
    deploy(lab, "node")
    return lab


def test_every_check_passes_on_every_node_after_the_deploys(fleet, tmp_path):
    junit = tmp_path / "report.xml"
    rc, report, out = run_check(fleet, tmp_path, "--junit", str(junit))
    assert rc == 0, out
    assert statuses(report) == {node: {str(i): "PASS" for i in range(1, 9)} for node in NODES}
    assert report["totals"] == {
        "total_pass": 16,
        "total_fail": 0,
        "total_skip": 0,
        "nodes_failed": 0,
        "nodes_passed": 2,
    }
    checks = {c["id"]: c for c in report["nodes"][0]["checks"]}
    assert "CRI pinned=false (containerd 1.6 keeps the label but does not honour it" in checks["5"]["actual"]
    assert "unreachable" in checks["6"]["actual"] and "HTTP 200" in checks["6"]["actual"]
    assert "Ready in" in checks["7"]["actual"] and "removed" in checks["7"]["actual"]
    assert "PID 1 is pause" in checks["8"]["actual"] and "IP kept" in checks["8"]["actual"]
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [
        ("node1", "8", "0"),
        ("node2", "8", "0"),
    ]
    password = json.loads(Path(f"{fleet['state_root']}/{LAB}/pki/registry/users.json").read_text())["pull"]
    assert password not in json.dumps(report) + out


HOSTS_TOML = "/etc/containerd/certs.d/registry.k8s.io/hosts.toml"
DRIFTS = {
    "sandbox image changed in the config": (
        "node2",
        'sed -i \'s#sandbox_image = "registry.k8s.io/pause:3.10"#sandbox_image = "registry.k8s.io/pause:3.9"#\''
        " /etc/containerd/config.toml && systemctl restart containerd",
        "2",
        "sandbox_image = 'registry.k8s.io/pause:3.9'",
    ),
    "hosts.toml removed": ("node1", f"rm {HOSTS_TOML}", "3", f"{HOSTS_TOML} is missing"),
    "pause deleted from the image store": (
        "node2",
        "ctr -n k8s.io images rm registry.k8s.io/pause:3.10",
        "5",
        "not in the image store",
    ),
    "pause unpinned": (
        "node1",
        "ctr -n k8s.io images label registry.k8s.io/pause:3.10 io.cri-containerd.pinned=",
        "5",
        "label io.cri-containerd.pinned=(none)",
    ),
    # Same registry, a path that holds nothing: hosts.toml still names the local registry (check 3
    # passes), but the mirror it points at lacks the image.
    "mirror points at a registry path that lacks the image": (
        "node2",
        'sed -i \'s#"https://{registry}"#"https://{registry}/v2/lacking"#g;'
        f" s#^\\( *\\)capabilities = .*#&\\n\\1override_path = true#' {HOSTS_TOML}",
        "6",
        f"https://{{registry}}/v2/lacking/pause/manifests/3.10 (from {HOSTS_TOML}): HTTP 404",
    ),
}


@pytest.mark.parametrize("drift", DRIFTS)
def test_drift_fails_exactly_its_node_and_its_check(fleet, ssh_config, tmp_path, drift):
    node, inject, check_id, actual = DRIFTS[drift]
    other = next(n for n in NODES if n != node)
    registry = fleet["registries"]["local"]["address"]
    inject, actual = inject.replace("{registry}", registry), actual.replace("{registry}", registry)
    ssh(ssh_config, node, inject)
    try:
        rc, report, out = run_check(fleet, tmp_path)
        found = statuses(report)
        assert rc == 1, out
        assert set(found[other].values()) == {"PASS"}, out
        assert {i for i, s in found[node].items() if s == "FAIL"} == {check_id}, out
        # The probes do not run on a drifted node: they could pull elsewhere or repair the drift.
        assert (found[node]["7"], found[node]["8"]) == ("SKIP", "SKIP"), out
        failed = next(c for n in report["nodes"] if n["node"] == node for c in n["checks"] if c["id"] == check_id)
        assert actual in failed["actual"], failed
        assert failed["remediation"] and failed["expected"]
        assert f"FAIL {node} {check_id} " in out and "remediation:" in out
    finally:
        deploy(fleet, "node", "--limit", node)


def _probes(ssh_config, node: str) -> list[str]:
    with forwarded_socket(ssh_config, node) as target:
        return Runtime(target).sandboxes(namespace=PROBE_NAMESPACE, labels=PROBE_LABELS)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _start_check_and_wait_for_a_probe(fleet, ssh_config, tmp_path) -> subprocess.Popen[bytes]:
    watch = (
        # Two containers: check 8's sandbox and its app, which live for a second or two; check 7's lives 0.3 s.
        f"for i in $(seq 400); do [ $(ctr -n k8s.io containers ls -q {PROBE_FILTER} | wc -l) -ge 2 ] && exit 0;"
        " sleep 0.05; done; exit 1"
    )
    watcher = subprocess.Popen(["ssh", "-F", str(ssh_config), "node1", watch])
    check = subprocess.Popen(
        check_command(fleet, tmp_path / "interrupted.json"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert watcher.wait(timeout=40) == 0, "no probe sandbox appeared on node1"
    return check


def test_a_check_stopped_with_sigterm_removes_its_probes_itself(fleet, ssh_config, tmp_path):
    check = _start_check_and_wait_for_a_probe(fleet, ssh_config, tmp_path)
    check.send_signal(signal.SIGTERM)
    assert check.wait(timeout=30) == 130
    assert [_probes(ssh_config, node) for node in NODES] == [[], []]


def test_a_killed_check_leaves_a_probe_that_the_next_run_removes_and_nothing_else(fleet, ssh_config, tmp_path):
    with forwarded_socket(ssh_config, "node1") as target:
        runtime = Runtime(target)
        # Pods that are not ours: our label in another namespace, our namespace without the label.
        bystanders = [
            runtime.run_sandbox("bystander", str(uuid.uuid4()), namespace="default", labels=PROBE_LABELS),
            runtime.run_sandbox("bystander", str(uuid.uuid4()), namespace=PROBE_NAMESPACE, labels={"app": "x"}),
        ]
    temporary: set[bytes] = set()
    try:
        check = _start_check_and_wait_for_a_probe(fleet, ssh_config, tmp_path)
        processes = [check.pid, *_descendants(check.pid)]
        # What the killed run leaves on this machine: its work directory and the CRI forwards' sockets.
        temporary = set()
        for pid in processes:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                temporary |= set(re.findall(rb"/tmp/podinfra-(?:check|cri)-[^/\x00]+", cmdline.read()))
        for pid in processes:  # as a crash, a lost SSH session or kill -9 would: no cleanup runs
            os.kill(pid, signal.SIGKILL)
        check.wait()
        left = _probes(ssh_config, "node1")
        assert left, "the killed run should have left its probe sandbox"

        rc, report, out = run_check(fleet, tmp_path)
        assert rc == 0, out
        first = {c["id"]: c["actual"] for c in report["nodes"][0]["checks"]}["1"]
        assert f"removed {len(left)} probe sandbox(es) left by an interrupted run" in first
        assert [_probes(ssh_config, node) for node in NODES] == [[], []]
        with forwarded_socket(ssh_config, "node1") as target:
            remaining = Runtime(target).sandboxes()
        assert not set(left) & set(remaining)
        assert set(bystanders) <= set(remaining), "only probe sandboxes may be removed"
    finally:
        with forwarded_socket(ssh_config, "node1") as target:
            for sandbox in bystanders:
                Runtime(target).remove_sandbox(sandbox)
        for path in temporary:
            config = Path(path.decode()) / "ssh_config"
            for node in NODES if config.exists() else ():  # the killed run's SSH masters
                subprocess.run(["ssh", "-F", str(config), "-O", "exit", node], capture_output=True, check=False)
            shutil.rmtree(path.decode(), ignore_errors=True)
