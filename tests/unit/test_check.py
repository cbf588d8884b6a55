"""podinfra.check without nodes: inventory loading, expectations, result aggregation, the table, the
JSON and JUnit shapes, the parallel runner (with a stand-in for pytest), and the suite's parsers."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pyinfra.api.exceptions import DeployError

from podinfra import check, checks, pki
from podinfra.check import NodeReport
from podinfra.checks import CheckResult
from podinfra.inventory import load_inventory, parse_data
from tests.node import nodeinfo

DIGEST = "sha256:" + "a" * 64


def results(statuses: str) -> list[CheckResult]:
    """One result per catalogue check; `statuses` like "ppfppsss" (pass, fail, skip)."""
    names = {"p": "pass", "f": "fail", "s": "skip"}
    return [
        CheckResult(c.id, c.name, c.description, names[s], f"want {c.id}", f"got {c.id}", c.remediation, duration=0.5)
        for c, s in zip(checks.CHECKS, statuses, strict=True)
    ]


REPORTS = [NodeReport("node1", results("pppppppp"), 4.0), NodeReport("node2", results("ppfppsss"), 3.0)]


@pytest.fixture
def inventory(tmp_path: Path):
    ca, _ = pki.ensure_ca(tmp_path / "pki")
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "nodes.py").write_text('kubernetes_version = "1.31"\nrestart_batch = 2\n')
    path = tmp_path / "fleet.py"
    path.write_text(
        "nodes = [\n"
        f"    ('n1', {{'ssh_hostname': '10.0.0.11', 'ssh_user': 'root', 'ssh_key': '/k', 'registry_ca': '{ca}',"
        " 'local_registry': '10.0.0.2:5000', 'registry_pull_password': 'secret'}),\n"
        f"    ('n2', {{'ssh_hostname': '10.0.0.12', 'registry_ca': '{ca}', 'local_registry': '10.0.0.2:5000',"
        " 'sandbox_image_mode': 'local', 'registry_prefix': 'mirror'}),\n"
        "]\n"
        "registry = [('reg', {'ssh_hostname': '10.0.0.2'})]\n"
        "_private = ['not-a-group']\n"
    )
    return path


def test_the_catalogue_has_eight_checks_each_with_a_remediation():
    assert [c.id for c in checks.CHECKS] == [str(i) for i in range(1, 9)]
    assert len({c.name for c in checks.CHECKS}) == 8
    assert all(c.description and c.remediation for c in checks.CHECKS)
    assert checks.catalogue("5").name == "pause"


def test_data_overrides_are_parsed_like_pyinfra():
    assert parse_data(["a=true", "b=3", 'c=["x"]', "d=10.0.0.1:5100", "e="]) == {
        "a": True,
        "b": 3,
        "c": ["x"],
        "d": "10.0.0.1:5100",
        "e": "",
    }
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_data(["novalue"])


def test_inventory_groups_group_data_and_overrides(inventory: Path):
    inv = load_inventory(str(inventory), ["airgap_probe=10.0.0.1:5100"])
    assert [h.name for h in inv.get_group("nodes")] == ["n1", "n2"]
    assert [h.name for h in inv.get_group("fleet")] == ["n1", "n2", "reg"]  # the file's own group
    n1 = inv.get_host("n1")
    assert n1.data.get("restart_batch") == 2 and n1.data.get("airgap_probe") == "10.0.0.1:5100"
    assert inv.get_host("reg").data.get("kubernetes_version") is None
    assert "_private" not in inv.groups


def test_expectations_canonical_and_local_modes(inventory: Path):
    inv = load_inventory(str(inventory), [f"pause_digest={DIGEST}", "airgap_probe=10.0.0.1:5100"])
    canonical = check.expectations(inv.get_host("n1"))
    assert canonical.sandbox_image == canonical.store_name == "registry.k8s.io/pause:3.10"
    assert (canonical.mirror_for, canonical.repository, canonical.digest) == ("registry.k8s.io", "pause", DIGEST)
    assert canonical.airgap_probe == "10.0.0.1:5100" and canonical.probe_image == checks.DEFAULT_PROBE_IMAGE
    local = check.expectations(inv.get_host("n2"))
    assert local.sandbox_image == f"10.0.0.2:5000/mirror/pause:3.10@{DIGEST}"
    assert local.store_name == f"10.0.0.2:5000/mirror/pause@{DIGEST}"
    assert local.mirror_for == "10.0.0.2:5000"
    assert "secret" not in repr(canonical)
    # as podinfra check hands them to each node's run
    for expected in (canonical, local):
        assert checks.Expectations.from_json(json.loads(json.dumps(expected.to_json()))) == expected


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ("airgap_probe=http://x/", "airgap_probe"),
        ("pause_digest=sha256:abc", "pause_digest"),
        ("check_probe_image=NOT A REF", "check_probe_image"),
        ("check_probe_timeout=0", "check_probe_timeout"),
        ("cri_socket=relative.sock", "cri_socket"),
        ("kubernetes_version=1.12", "kubernetes_version"),
    ],
)
def test_bad_data_names_the_key(inventory: Path, data: str, key: str):
    inv = load_inventory(str(inventory), [data])
    with pytest.raises(DeployError, match=f"host n1: host data {key}"):
        check.expectations(inv.get_host("n1"), ask_registry=False)


def test_probe_image_false_skips_check_8(inventory: Path):
    inv = load_inventory(str(inventory), [f"pause_digest={DIGEST}", "check_probe_image=false"])
    assert check.expectations(inv.get_host("n1")).probe_image is None


def test_ssh_config_gives_each_node_its_inventory_ssh_data(inventory: Path, tmp_path: Path):
    inv = load_inventory(str(inventory), ["ssh_strict_host_key_checking=yes"])
    text = check.ssh_config_text(inv.get_group("nodes"), tmp_path)
    n1 = text.split("Host n2")[0]
    for line in ("Host n1", "HostName 10.0.0.11", "User root", "IdentityFile /k", "StrictHostKeyChecking yes"):
        assert f"{line}\n" in n1
    assert f"ControlPath {tmp_path}/%C" in n1 and "BatchMode yes" in n1
    inv = load_inventory(str(inventory), ["ssh_password=x"])
    with pytest.raises(DeployError, match="ssh_password"):
        check.ssh_config_text(inv.get_group("nodes"), tmp_path)


def test_results_file_is_read_in_catalogue_order_and_gaps_fail(tmp_path: Path):
    path = tmp_path / "r.json"
    entries = [r.__dict__ for r in results("pppppppp")]
    path.write_text(json.dumps({"nodes": {"node1": list(reversed(entries[:7]))}}))
    report = check.read_results(path, "node1", 2.0)
    assert report is not None
    assert [r.id for r in report.results] == [c.id for c in checks.CHECKS]
    assert report.results[7].status == "fail" and "not reported" in report.results[7].actual
    assert check.read_results(tmp_path / "missing.json", "node1", 1) is None
    assert check.read_results(path, "other", 1) is None


def test_a_node_that_reported_nothing_fails_every_check():
    report = check.not_run("node3", "ssh: connect to host 10.0.0.13 port 22: No route to host")
    assert report.failed and {r.status for r in report.results} == {"fail"}
    assert all(r.remediation for r in report.results)
    text = check.render([report])
    assert "FAIL node3 checks 1,2,3,4,5,6,7,8\n  actual:      ssh: connect" in text, "one cause is said once"
    assert text.count("FAIL ") == 1


def test_totals_count_checks_and_nodes():
    assert check.totals(REPORTS) == {
        "total_pass": 12,
        "total_fail": 1,
        "total_skip": 3,
        "nodes_failed": 1,
        "nodes_passed": 1,
    }


def test_terminal_report_is_a_table_then_the_failures_with_their_remediation():
    text = check.render(REPORTS)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["NODE", "1", "runtime"]
    assert lines[2].split() == ["node1"] + ["pass"] * 8
    assert lines[3].split() == ["node2", "pass", "pass", "fail", "pass", "pass", "skip", "skip", "skip"]
    failure = text[text.index("FAIL node2 3 mirror") :]
    assert "expected:    want 3" in failure and "actual:      got 3" in failure
    assert f"remediation: {checks.catalogue('3').remediation}" in failure
    assert text.count("FAIL ") == 1
    assert lines[-1] == "2 nodes: 1 passed, 1 failed (12 checks passed, 1 failed, 3 skipped)"


def test_json_has_kube_bench_like_checks_and_totals():
    doc = check.to_json(REPORTS, "inventories/lab.py", started=0, duration=4.2)
    assert doc["started"] == "1970-01-01T00:00:00+00:00" and doc["duration_s"] == 4.2
    assert doc["totals"]["total_fail"] == 1 and doc["totals"]["nodes_failed"] == 1
    node2 = doc["nodes"][1]
    assert node2["node"] == "node2" and node2["status"] == "FAIL"
    assert node2["totals"] == {"total_pass": 4, "total_fail": 1, "total_skip": 3}
    mirror = node2["checks"][2]
    assert {"id", "description", "status", "expected", "actual", "remediation"} <= set(mirror)
    assert (mirror["id"], mirror["status"], mirror["actual"]) == ("3", "FAIL", "got 3")
    assert doc["nodes"][0]["status"] == "PASS"
    json.dumps(doc)


def test_junit_has_a_suite_per_node_and_a_case_per_check():
    root = ET.fromstring(check.to_junit(REPORTS))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["node1", "node2"]
    assert (suites[1].get("tests"), suites[1].get("failures"), suites[1].get("skipped")) == ("8", "1", "3")
    cases = suites[1].findall("testcase")
    assert cases[2].get("name") == "3 mirror" and cases[2].get("classname") == "podinfra.check.node2"
    failure = cases[2].find("failure")
    assert failure is not None and failure.get("message") == "got 3" and "remediation:" in (failure.text or "")
    assert cases[5].find("skipped") is not None and cases[0].find("failure") is None


def test_nodes_run_in_parallel_and_a_hung_node_times_out(inventory: Path, monkeypatch: pytest.MonkeyPatch):
    """Ten nodes taking 1 s each finish in about 1 s; a node that hangs is reported, not waited for."""
    hosts = [f"n{i}" for i in range(10)]
    (inventory.parent / "ten.py").write_text(f"nodes = {hosts!r}\n")
    inv = load_inventory(str(inventory.parent / "ten.py"))

    def fake_run(args: list[str], log: Path) -> None:  # in the forked child, as check.run_suite
        node = next(a for a in args if a.startswith("--hosts=")).removeprefix("--hosts=ssh://")
        results = next(a for a in args if a.startswith("--podinfra-results=")).split("=", 1)[1]
        time.sleep(30 if node == "n9" else 1)
        entries = [{"id": str(i), "name": "c", "description": "d", "status": "pass"} for i in range(1, 9)]
        Path(results).write_text(json.dumps({"nodes": {node: entries}}))

    monkeypatch.setattr(check, "run_suite", fake_run)
    started = time.monotonic()
    reports = check.run_nodes(inv.get_group("nodes"), {}, timeout=3, parallel=10, echo=False)
    elapsed = time.monotonic() - started
    assert [r.node for r in reports] == hosts
    assert all(not r.failed for r in reports[:9])
    assert reports[9].failed and "timed out after 3s" in reports[9].results[0].actual
    assert elapsed < 6, f"10 nodes took {elapsed:.1f}s"


# --- the suite's parsers (tests/node/nodeinfo.py) --------------------------------------------------------


def test_hosts_toml_endpoints_in_containerd_order():
    text = """
server = "https://10.0.0.2:5000"
capabilities = ["pull", "resolve"]
ca = "/etc/podinfra/registry-ca.crt"

[host."https://10.0.0.3:5000/v2/mirror"]
  capabilities = ["pull"]
  override_path = true
  ca = ["/a.crt", "/b.crt"]
"""
    first, server = nodeinfo.hosts_endpoints(text)
    assert (first.url, first.is_server, first.api_root) == ("https://10.0.0.3:5000/v2/mirror", False, first.url)
    assert first.ca == ("/a.crt", "/b.crt") and first.capabilities == ("pull",)
    assert (server.netloc, server.api_root, server.ca) == (
        "10.0.0.2:5000",
        "https://10.0.0.2:5000/v2",
        ("/etc/podinfra/registry-ca.crt",),
    )
    assert nodeinfo.has_server(text) and not nodeinfo.has_server('[host."https://x"]\n')
    assert nodeinfo.hosts_endpoints('[host."https://x"]\n')[0].capabilities == nodeinfo.DEFAULT_CAPABILITIES


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ('KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=r/pause:3.10"\n', "r/pause:3.10"),
        ("KUBELET_KUBEADM_ARGS='--pod-infra-container-image r/pause:3.9 --v=2'\n", "r/pause:3.9"),
        ("export KUBELET_KUBEADM_ARGS=--pod-infra-container-image=x:1\n", "x:1"),
        ('KUBELET_KUBEADM_ARGS="--v=2"\n', None),
        ("", None),
    ],
)
def test_kubelet_flag_forms(text: str, flag: str | None):
    assert nodeinfo.kubelet_pause_flag(text) == flag


def test_ctr_listing_gives_digest_and_labels():
    output = (
        "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
        "registry.k8s.io/pause:3.10 application/vnd.oci.image.index.v1+json sha256:46db 299.0 KiB "
        "linux/amd64,linux/arm64/v8 io.cri-containerd.image=managed,io.cri-containerd.pinned=pinned\n"
        "sha256:0e22 application/vnd.oci.image.index.v1+json sha256:46db 299.0 KiB linux/amd64 -\n"
    )
    images = nodeinfo.ctr_images(output)
    assert images["registry.k8s.io/pause:3.10"].digest == "sha256:46db"
    assert images["registry.k8s.io/pause:3.10"].labels["io.cri-containerd.pinned"] == "pinned"
    assert images["sha256:0e22"].labels == {}


def test_curl_headers_and_credentials_config():
    status, headers = nodeinfo.http_reply("HTTP/2 401\r\nwww-authenticate: Basic\r\n\r\nHTTP/2 404\r\n\r\n")
    assert (status, headers) == (404, {})
    assert nodeinfo.curl_config("pull", 'p"a\\ss') == b'user = "pull:p\\"a\\\\ss"\n'
