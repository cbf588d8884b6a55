"""podinfra check without nodes: inventory loading, expectations, the ssh_config, results files, and
the parallel runner (with a stand-in for pytest)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pyinfra.api.exceptions import DeployError

from podinfra.check import catalogue, runner
from podinfra.data import pki
from podinfra.data.inventory import find_host, load_inventory, parse_data
from podinfra.data.settings import node_settings
from podinfra.images.probe_image import REFERENCE as DEFAULT_PROBE_IMAGE

DIGEST = "sha256:" + "a" * 64


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


def test_the_catalogue_has_nine_checks_each_with_a_remediation():
    assert [c.id for c in catalogue.CHECKS] == [str(i) for i in range(1, 10)]
    assert len({c.name for c in catalogue.CHECKS}) == 9
    assert all(c.description and c.remediation for c in catalogue.CHECKS)
    assert catalogue.catalogue("5").name == "pause"


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


def expected(inv, name: str, ask: bool = True) -> catalogue.Expectations:
    return catalogue.expectations(node_settings(inv.get_host(name)), ask_registry=ask)


def test_expectations_canonical_and_local_modes(inventory: Path):
    inv = load_inventory(str(inventory), [f"pause_digest={DIGEST}", "airgap_probe=10.0.0.1:5100"])
    canonical = expected(inv, "n1")
    assert canonical.sandbox_image == canonical.store_name == "registry.k8s.io/pause:3.10"
    assert (canonical.mirror_for, canonical.settings.pause_repository, canonical.digest) == (
        "registry.k8s.io",
        "pause",
        DIGEST,
    )
    assert canonical.settings.airgap_probe == "10.0.0.1:5100"
    assert canonical.settings.check_probe_image == DEFAULT_PROBE_IMAGE
    local = expected(inv, "n2")
    assert local.sandbox_image == f"10.0.0.2:5000/mirror/pause:3.10@{DIGEST}"
    assert local.store_name == f"10.0.0.2:5000/mirror/pause@{DIGEST}"
    assert local.mirror_for == "10.0.0.2:5000"
    assert "secret" not in repr(canonical)


def test_without_a_registry_the_digest_source_says_why(inventory: Path):
    inv = load_inventory(str(inventory))
    assert (expected(inv, "n1", ask=False).digest, expected(inv, "n1", ask=False).digest_source) == (None, "not asked")
    # nothing listens on 10.0.0.2 here: one line saying so, not an exception
    inv = load_inventory(str(inventory), ["local_registry=127.0.0.1:9"])
    assert expected(inv, "n1").digest_source.startswith("unknown: registry 127.0.0.1:9 is unreachable")


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
        node_settings(inv.get_host("n1"))


def test_probe_image_false_turns_check_8_off(inventory: Path):
    inv = load_inventory(str(inventory), [f"pause_digest={DIGEST}", "check_probe_image=false"])
    assert expected(inv, "n1").settings.check_probe_image is False


def test_hosts_are_found_by_name_or_by_ssh_hostname(inventory: Path):
    inv = load_inventory(str(inventory))
    assert find_host(inv, "n2").name == "n2"
    assert find_host(inv, "10.0.0.12").name == "n2"  # testinfra's --hosts=ssh://10.0.0.12
    with pytest.raises(RuntimeError, match="10.9.9.9 is not in the inventory, by name or ssh_hostname"):
        find_host(inv, "10.9.9.9")


def test_ssh_config_gives_each_node_its_inventory_ssh_data(inventory: Path, tmp_path: Path):
    inv = load_inventory(str(inventory), ["ssh_strict_host_key_checking=yes"])
    text = runner.ssh_config_text(inv.get_group("nodes"), tmp_path)
    n1 = text.split("Host n2")[0]
    for line in ("Host n1", "HostName 10.0.0.11", "User root", "IdentityFile /k", "StrictHostKeyChecking yes"):
        assert f"{line}\n" in n1
    assert f"ControlPath {tmp_path}/%C" in n1 and "BatchMode yes" in n1
    inv = load_inventory(str(inventory), ["ssh_password=x"])
    with pytest.raises(DeployError, match="ssh_password"):
        runner.ssh_config_text(inv.get_group("nodes"), tmp_path)


def _entries(count: int = 9) -> list[dict]:
    return [
        {"id": c.id, "name": c.name, "description": c.description, "status": "pass"} for c in catalogue.CHECKS[:count]
    ]


def test_results_file_is_read_in_catalogue_order_and_gaps_fail(tmp_path: Path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"nodes": {"node1": list(reversed(_entries(8)))}, "notes": {"node1": ["removed 1"]}}))
    report = runner.read_results(path, "node1", 2.0)
    assert report is not None
    assert [r.id for r in report.results] == [c.id for c in catalogue.CHECKS]
    assert report.results[8].status == "fail" and "not reported" in report.results[8].actual
    assert report.notes == ["removed 1"]
    assert runner.read_results(tmp_path / "missing.json", "node1", 1) is None
    assert runner.read_results(path, "other", 1) is None


def test_nodes_run_in_parallel_and_a_hung_node_times_out(inventory: Path, monkeypatch: pytest.MonkeyPatch):
    """Ten nodes, each of which finishes only once all ten have started (so they must run at once); a node
    that hangs is reported, not waited for. No wall-clock assertion: speed lives in the benchmarks."""
    hosts = [f"n{i}" for i in range(10)]
    (inventory.parent / "ten.py").write_text(f"nodes = {hosts!r}\n")
    inv = load_inventory(str(inventory.parent / "ten.py"))
    started = inventory.parent / "started"
    started.mkdir()

    def fake_run(args: list[str], log: Path, plugin: object) -> None:  # in the forked child, as runner.run_suite
        node = next(a for a in args if a.startswith("--hosts=")).removeprefix("--hosts=ssh://")
        results = next(a for a in args if a.startswith("--podinfra-results=")).split("=", 1)[1]
        (started / node).touch()
        while len(list(started.iterdir())) < len(hosts) or node == "n9":  # n9 hangs until it is stopped
            time.sleep(0.05)
        Path(results).write_text(json.dumps({"nodes": {node: _entries()}}))

    monkeypatch.setattr(runner, "run_suite", fake_run)
    seen: list[str] = []
    reports = runner.run_nodes(inv.get_group("nodes"), {}, timeout=5, parallel=10, done=lambda r: seen.append(r.node))
    assert [r.node for r in reports] == hosts
    assert all(not r.failed for r in reports[:9]), "each of them waited for all ten to start"
    # slow is not a wrong answer: every check of the hung node WARN, naming the limit
    assert not reports[9].failed and {r.status for r in reports[9].results} == {"warn"}
    assert "passed --timeout 5s" in reports[9].results[0].actual
    assert sorted(seen) == sorted(hosts) and seen[-1] == "n9"  # told of each node as it ends
