"""`podinfra check` on the lab's real containerd nodes (1.6, 1.7, 2.1, 2.2, 2.3): every check passes after the
deploys (1.6.20's pins are the one stated exception); each drift fails exactly its node and its
check; an interrupted check, at any moment, leaves no probe sandbox behind.

Other modules change the nodes (versions, broken containerd, resets), so this one first brings the
fleet to a known state itself: registry, mirror (pause and the probe image), node for Kubernetes 1.31.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from podinfra.check.catalogue import PROBE_LABELS, PROBE_NAMESPACE
from podinfra.check.cri import Runtime, forwarded_socket
from podinfra.images.oci import ALL_MANIFEST_TYPES

from .conftest import LAB, LINES, NODES, PODINFRA, REGISTRY, pyinfra, ssh

pytestmark = pytest.mark.lab
ENV = {**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": "1.31"}
# Probe sandboxes carry their uid as this label (podinfra/suite/probes.py); the bystanders below do not.
PROBE_FILTER = 'labels.\\"podinfra.io/probe-uid\\"'
# The lab's nodes have no kubelet: check 4 has nothing to check (INFO). containerd 1.6.20 keeps the pinned
# label but does not honour it: check 5 says so, as a warning.
ALL_PASS = {**{str(i): "PASS" for i in range(1, 10)}, "4": "INFO"}
EXPECTED = {node: {**ALL_PASS, **({"5": "WARN"} if line == "1.6" else {})} for node, line in LINES.items()}


def deploy(lab, name: str, *extra: str) -> None:
    result = pyinfra(lab, name, "1.31", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def check_command(lab, report: Path | str, *extra: str) -> list[str]:
    return [*PODINFRA, "check", lab["inventory"], "--json", str(report), *extra]


def run_check(lab, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    result = subprocess.run(check_command(lab, report, *extra), capture_output=True, text=True, env=ENV)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(report.read_text()), result.stdout


def statuses(report: dict) -> dict[str, dict[str, str]]:
    return {c["node"]: {r["test_number"]: r["status"] for r in c["tests"][0]["results"]} for c in report["Controls"]}


def result(report: dict, node: str, check_id: str) -> dict:
    return next(
        r
        for c in report["Controls"]
        if c["node"] == node
        for r in c["tests"][0]["results"]
        if r["test_number"] == check_id
    )


@pytest.fixture(scope="module")
def fleet(lab):
    deploy(lab, "registry")
    deploy(lab, "mirror")
    deploy(lab, "node")
    return lab


def test_every_check_passes_on_every_line_after_the_deploys(fleet, tmp_path):
    junit = tmp_path / "report.xml"
    rc, report, out = run_check(fleet, tmp_path, "--junit", str(junit))
    assert rc == 0, out
    assert statuses(report) == EXPECTED, out
    expected = [status for node in EXPECTED.values() for status in node.values()]
    assert report["Totals"] == {f"total_{s.lower()}": expected.count(s) for s in ("PASS", "FAIL", "WARN", "INFO")}
    assert (
        "only running sandboxes keep pause from the kubelet's image GC" in result(report, "node1", "5")["actual_value"]
    )
    assert "CRI pinned=true" in result(report, "node2", "5")["actual_value"]  # 1.7.24 and 2.1.9 honour pins
    assert "CRI pinned=true" in result(report, "node3", "5")["actual_value"]
    assert "CRI runs 'registry.k8s.io/pause:3.10'" in result(report, "node1", "2")["actual_value"]
    assert "sandbox = 'registry.k8s.io/pause:3.10'" in result(report, "node3", "2")["actual_value"]
    assert "unreachable" in result(report, "node2", "6")["actual_value"]
    assert "Ready in" in result(report, "node3", "7")["actual_value"]
    assert "PID 1 is pause" in result(report, "node3", "8")["actual_value"]
    assert "IP kept" in result(report, "node1", "8")["actual_value"]
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [(n, "9", "0") for n in NODES]
    password = json.loads(Path(f"{fleet['state_root']}/{LAB}/pki/registry/users.json").read_text())["pull"]
    assert password not in json.dumps(report) + out


def test_json_to_standard_output_is_kube_bench_json_alone(fleet):
    found = subprocess.run(
        check_command(fleet, "-", "--limit", "node3", "--data", "check_probe_image=false"),
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)
    assert report["Totals"]["total_info"] == 2  # check 8 turned off: INFO, never PASS (and no kubelet)
    assert result(report, "node3", "8")["status"] == "INFO"
    assert "NODE" in found.stderr and not Path("-").exists()


def test_without_airgap_probe_the_air_gap_is_a_warning_not_a_pass(fleet, tmp_path):
    rc, report, out = run_check(fleet, tmp_path, "--limit", "node2", "--data", "airgap_probe=null")
    assert rc == 0, out
    assert result(report, "node2", "6")["status"] == "WARN"
    assert "the air gap was not checked (no airgap_probe)" in result(report, "node2", "6")["actual_value"]


TEXT: dict = {"capture_output": True, "text": True, "check": False}
LOAD_SECONDS = 300  # every busy loop ends by itself after this, whatever happens to the test


def _busy(ssh_config: Path, host: str, loops: int = 4) -> list[str]:
    """`loops` busy shells on `host`, each bounded by `timeout`: their pids."""
    start = f"setsid timeout {LOAD_SECONDS} sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & echo $!"
    return ssh(ssh_config, host, f"for i in $(seq {loops}); do {start}; done").stdout.split()


def _pulling(fleet, clients: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    """`clients` concurrent GETs of the pause manifest through the registry's front, as the pull user, over and
    over (curl --parallel), until killed."""
    pki = Path(fleet["state_root"]) / LAB / "pki"
    password = json.loads((pki / "registry" / "users.json").read_text())["pull"]
    auth, config = tmp_path / "auth.curlrc", tmp_path / "pulls.curlrc"
    url = f"https://{REGISTRY}/v2/pause/manifests/3.10"
    accept = ", ".join(ALL_MANIFEST_TYPES)
    lines = [f'user = "pull:{password}"', f'cacert = "{pki / "ca.crt"}"', f'header = "Accept: {accept}"']
    auth.write_text("\n".join(lines) + "\n")
    config.write_text("\n".join(lines + [f'url = "{url}"\noutput = "/dev/null"'] * 1000) + "\n")
    once = subprocess.run(["curl", "-sS", "-K", str(auth), "-o", "/dev/null", "-w", "%{http_code}", url], **TEXT)
    assert once.stdout == "200", once.stdout + once.stderr  # what the load asks is answered
    loop = f"while :; do curl -s -Z --parallel-max {clients} -K {config} >/dev/null 2>&1; done"
    return subprocess.Popen(["sh", "-c", loop], start_new_session=True)


def test_loaded_nodes_and_a_loaded_registry_give_no_false_fail(fleet, ssh_config, tmp_path):
    """Four busy loops in every node and in the registry host, and 50 clients pulling the pause manifest through
    the registry's front: every check still passes, or (a wait past its budget) warns naming the wait and its
    limit. A healthy node is never FAIL for being slow."""
    busy: dict[str, list[str]] = {}
    pulls = None
    try:
        busy = {host: _busy(ssh_config, host) for host in (*NODES, "registry")}
        pulls = _pulling(fleet, 50, tmp_path)
        rc, report, out = run_check(fleet, tmp_path)
    finally:
        if pulls is not None:
            os.killpg(pulls.pid, signal.SIGKILL)
            pulls.wait()
        for host, pids in busy.items():
            ssh(ssh_config, host, f"kill {' '.join(pids)}", check=False)
    assert rc == 0, out
    found = statuses(report)
    wrong = {n: {c: s for c, s in checks.items() if s not in (EXPECTED[n][c], "WARN")} for n, checks in found.items()}
    assert wrong == {node: {} for node in NODES}, out
    slow = [
        result(report, node, c)["actual_value"]
        for node, checks in found.items()
        for c, status in checks.items()
        if status == "WARN" and EXPECTED[node][c] != "WARN"
    ]
    assert all("check_probe_timeout" in actual or "--timeout" in actual for actual in slow), slow


HOSTS_TOML = "/etc/containerd/certs.d/registry.k8s.io/hosts.toml"
DRIFTS = {
    "sandbox image changed in the config (2.1)": (
        "node3",
        "sed -i -E \"s#^( *sandbox = )[\\\"']registry.k8s.io/pause:3.10[\\\"']#\\1'registry.k8s.io/pause:3.9'#\""
        " /etc/containerd/config.toml && systemctl restart containerd",
        "2",
        "sandbox = 'registry.k8s.io/pause:3.9'",
    ),
    "hosts.toml removed": ("node1", f"rm {HOSTS_TOML}", "3", f"{HOSTS_TOML} is missing"),
    "pause deleted from the image store (2.1)": (
        "node3",
        "ctr -n k8s.io images rm registry.k8s.io/pause:3.10",
        "5",
        "not in the image store",
    ),
    # containerd 1.7.24 and 2.x report their configured sandbox image pinned through the CRI whatever its
    # label, so unpinning it is a drift only where the label is all there is: 1.6.20.
    "pause unpinned (1.6)": (
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
    registry = fleet["registries"]["local"]["address"]
    inject, actual = inject.replace("{registry}", registry), actual.replace("{registry}", registry)
    ssh(ssh_config, node, inject)
    try:
        rc, report, out = run_check(fleet, tmp_path)
        found = statuses(report)
        assert rc == 1, out
        for other in NODES:
            if other != node:
                assert found[other] == EXPECTED[other], out
        assert {i for i, s in found[node].items() if s == "FAIL"} == {check_id}, out
        # The probes do not run on a drifted node (WARN: not proved): they could pull elsewhere or repair the drift.
        assert (found[node]["7"], found[node]["8"]) == ("WARN", "WARN"), out
        failed = result(report, node, check_id)
        assert actual in failed["actual_value"], failed
        assert failed["remediation"] and failed["expected_result"]
        assert f"FAIL {node} {check_id} " in out and "remediation:" in out
    finally:
        deploy(fleet, "node", "--limit", node)


def test_pytest_with_testinfra_hosts_by_address_finds_the_nodes(fleet, ssh_config, tmp_path):
    """testinfra's own convention: --hosts=ssh://ADDRESS; the inventory names the host otherwise."""
    address = next(n["address"] for n in fleet["nodes"] if n["name"] == "node2")
    results = tmp_path / "results.json"
    found = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "podinfra.suite.plugin", "--pyargs", "podinfra.suite", "-p",
         "no:cacheprovider", "-q",
         f"--hosts=ssh://{address}", f"--ssh-config={ssh_config}", f"--podinfra-inventory={fleet['inventory']}",
         f"--podinfra-results={results}"],
        capture_output=True, text=True, env=ENV, cwd=tmp_path,
    )  # fmt: skip
    assert found.returncode == 0, found.stdout[-3000:]
    reported = json.loads(results.read_text())["nodes"][address]
    assert [r["status"] for r in reported] == ["pass"] * 3 + ["info"] + ["pass"] * 5


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


def _start_check(fleet, tmp_path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        check_command(fleet, tmp_path / "interrupted.json", *extra),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for_a_probe(ssh_config, node: str) -> None:
    watch = (
        # Two containers: check 8's sandbox and its app, which live for a second or two; check 7's lives 0.3 s.
        f"for i in $(seq 400); do [ $(ctr -n k8s.io containers ls -q {PROBE_FILTER} | wc -l) -ge 2 ] && exit 0;"
        " sleep 0.05; done; exit 1"
    )
    assert ssh(ssh_config, node, watch, check=False).returncode == 0, f"no probe sandbox appeared on {node}"


def test_interrupts_at_any_moment_leave_no_probe_behind(fleet, ssh_config, tmp_path):
    """SIGTERM or SIGINT to podinfra check's process group, at random moments of its run."""
    rng = random.Random(20261201)
    for attempt in range(8):
        check = _start_check(fleet, tmp_path)
        time.sleep(rng.uniform(0.5, 6.0))
        os.killpg(check.pid, rng.choice((signal.SIGTERM, signal.SIGINT)))
        # 130 once it runs nodes; before that (imports, reading the inventory) the signal's own default
        check.wait(timeout=60)
        left = {node: _probes(ssh_config, node) for node in NODES}
        assert left == {node: [] for node in NODES}, f"attempt {attempt}: {left}"


def test_a_killed_check_leaves_a_probe_that_the_next_run_removes_says_so_and_nothing_else(fleet, ssh_config, tmp_path):
    with forwarded_socket(ssh_config, "node1") as target:
        runtime = Runtime(target)
        # Pods that are not ours: our label in another namespace, our namespace without the label.
        bystanders = [
            runtime.run_sandbox("bystander", str(uuid.uuid4()), namespace="default", labels=PROBE_LABELS),
            runtime.run_sandbox("bystander", str(uuid.uuid4()), namespace=PROBE_NAMESPACE, labels={"app": "x"}),
        ]
    temporary: set[bytes] = set()
    try:
        # node1 alone: a probe the kill leaves on another node would outlive this test (the rerun is node1's).
        check = _start_check(fleet, tmp_path, "--limit", "node1")
        _wait_for_a_probe(ssh_config, "node1")
        processes = [check.pid, *_descendants(check.pid)]
        # What the killed run leaves on this machine: its work directory and the CRI forwards' sockets.
        for pid in processes:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                temporary |= set(re.findall(rb"/tmp/podinfra-(?:check|cri)-[^/\x00]+", cmdline.read()))
        for pid in processes:  # as a crash, a lost SSH session or kill -9 would: no cleanup runs
            os.kill(pid, signal.SIGKILL)
        check.wait()
        left = _probes(ssh_config, "node1")
        assert left, "the killed run should have left its probe sandbox"

        rc, report, out = run_check(fleet, tmp_path, "--limit", "node1")
        assert rc == 0, out
        note = f"removed {len(left)} probe sandbox(es) left by an interrupted run"
        assert note in result(report, "node1", "1")["actual_value"]
        assert f"NOTE node1: {note}" in out, "said in the terminal too"
        assert {node: _probes(ssh_config, node) for node in NODES} == {node: [] for node in NODES}
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
