"""`podinfra check --upgrade-to VERSION` without nodes: checks 10-14 on a node's snapshot as the suite reads
it, the expectations asked of a registry, the report's columns and the command's refusal of a bad target.
The lab runs them on real nodes (tests/lab/test_frontier.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import testinfra

from podinfra.check import catalogue, report
from podinfra.cli import main
from podinfra.data.models import NodeData
from podinfra.suite import test_upgrade as upgrade
from podinfra.suite.node import Node

DIGEST = "sha256:" + "b" * 64
FLAGS = "/var/lib/kubelet/kubeadm-flags.env"


def node(version: str, target: str, digest: str | None = DIGEST, flags: str = "", **data: str) -> Node:
    settings = NodeData.model_validate(
        {"kubernetes_version": "1.35", "local_registry": "10.0.0.2:5000", "registry_ca": "system", **data}
    )
    expect = catalogue.expectations(settings, ask_registry=False)
    tag = catalogue.versions.pause_tag(target)
    source = "local registry 10.0.0.2:5000" if digest else f"10.0.0.2:5000/pause:{tag} is not in the registry"
    expect = catalogue.Expectations(**{**expect.__dict__, "upgrade": catalogue.Upgrade(target, tag, digest, source)})
    shown = {"daemon": "pid=1\nconfig=/c.toml\n--- dump\nversion = 3\n", f"file {FLAGS}": flags}
    socket = "/run/containerd/containerd.sock"
    return Node(
        "n1", testinfra.get_host("local://"), expect, "containerd", version, socket, "test", None, "localhost", shown
    )


def run(check, found: Node) -> catalogue.CheckResult:
    record = catalogue.catalogue(check.pytestmark[0].args[0]).result()
    try:
        check(found, record)
    except pytest.fail.Exception:
        record.status = "fail"
    return record


def test_a_target_pause_not_mirrored_fails_naming_the_tag():
    missing = run(upgrade.test_target_pause_is_in_the_local_registry, node("2.2.7", "1.37", digest=None))
    assert missing.status == "fail"
    assert missing.actual == "pause:3.10.2 for Kubernetes 1.37: 10.0.0.2:5000/pause:3.10.2 is not in the registry"
    held = run(upgrade.test_target_pause_is_in_the_local_registry, node("2.2.7", "1.37"))
    assert (held.status, held.actual) == ("pass", f"10.0.0.2:5000/pause:3.10.2 at {DIGEST}")


@pytest.mark.parametrize(("containerd", "status"), [("1.6.20", "fail"), ("1.7.24", "fail"), ("2.1.9", "pass")])
def test_containerd_1x_lines_end_at_1_35(containerd, status):
    found = run(upgrade.test_target_supports_the_nodes_runtime, node(containerd, "1.37"))
    assert found.status == status
    if status == "fail":
        line = containerd.rsplit(".", 1)[0]
        assert found.actual == (
            f"containerd {containerd} (line {line}): Kubernetes 1.37 needs containerd 2.0 or later; "
            "the 1.x lines end at 1.35"
        )
    assert run(upgrade.test_target_supports_the_nodes_runtime, node(containerd, "1.35")).status == "pass"


def test_the_config_version_the_line_wants_is_info():
    found = run(upgrade.test_target_config_version, node("2.3.4", "1.37"))
    assert (found.status, found.actual) == ("info", "containerd 2.3.4 reads config version 4 (its effective config: 3)")
    old = run(upgrade.test_target_config_version, node("1.7.24", "1.37"))
    assert old.status == "info" and "reads version 3 (2.0-2.2) or 4 (2.3+)" in old.actual


def test_a_pause_flag_the_target_kubelet_refuses_fails():
    flags = 'KUBELET_KUBEADM_ARGS="--v=2 --pod-infra-container-image=registry.k8s.io/pause:3.10"\n'
    found = run(upgrade.test_target_kubelet_takes_its_flags, node("2.2.7", "1.37", flags=flags))
    assert found.status == "fail"
    assert found.actual == (
        f"--pod-infra-container-image=registry.k8s.io/pause:3.10 in {FLAGS}: the kubelet of Kubernetes 1.37 will "
        'not start ("failed to parse kubelet flag: unknown flag: --pod-infra-container-image")'
    )
    assert run(upgrade.test_target_kubelet_takes_its_flags, node("2.2.7", "1.34", flags=flags)).status == "pass"
    clean = run(upgrade.test_target_kubelet_takes_its_flags, node("2.2.7", "1.37", flags='KUBELET_KUBEADM_ARGS=""\n'))
    assert clean.status == "pass"


def test_what_becomes_of_the_old_pause_follows_old_pause():
    moved = run(upgrade.test_what_becomes_of_the_old_pause, node("2.2.7", "1.37", old_pause="remove"))
    assert moved.status == "info" and "pause:3.10.1 keep it until their pods are recreated, then it is removed" in (
        moved.actual
    )
    same = run(upgrade.test_what_becomes_of_the_old_pause, node("2.2.7", "1.35"))
    assert same.actual == "pause:3.10.1 is also Kubernetes 1.35's: nothing is released"


def test_the_upgrade_asks_the_registry_and_says_why_it_has_no_digest():
    settings = NodeData.model_validate(
        {"kubernetes_version": "1.35", "local_registry": "127.0.0.1:9", "registry_ca": "system"}
    )
    expect = catalogue.expectations(settings, ask_registry=False, upgrade_to="1.37")
    assert expect.upgrade is not None and (expect.upgrade.tag, expect.upgrade.digest) == ("3.10.2", None)
    assert "127.0.0.1:9" in expect.upgrade.digest_source
    assert [c.id for c in catalogue.checks_for(expect)] == [str(i) for i in range(1, 15)]
    assert len(catalogue.checks_for(catalogue.expectations(settings, ask_registry=False))) == 9


def test_the_report_has_a_column_per_check_run():
    checks = (*catalogue.CHECKS, *catalogue.UPGRADE_CHECKS)
    rendered = report.render([report.not_run("n1", "down", checks=checks)])
    assert "10 target pause" in rendered and "14 old pause" in rendered


def test_a_target_outside_the_catalogue_is_refused_before_any_node(tmp_path: Path, capsys):
    inventory = tmp_path / "fleet.py"
    inventory.write_text(
        "nodes = [('n1', {'kubernetes_version': '1.35', 'local_registry': '10.0.0.2:5000', 'registry_ca': 'system'})]\n"
    )
    assert main(["check", str(inventory), "--upgrade-to", "1.38"]) == 2
    assert "Kubernetes 1.38 is not in podinfra's catalogue (1.24 to 1.37): --upgrade-to takes a minor" in (
        capsys.readouterr().err
    )


class FakeRuntime:
    """A CRI whose Status verbose "config" is containerd 2.4's (internal/cri/server/status.go at v2.4.0-beta.0
    and main: the runtime config only, no sandboxImage; containerd#13940 adds plugin exports, not this key)."""

    def __init__(self, config: dict[str, object]) -> None:
        self.config, self.asked = config, 0

    def status_config(self) -> dict[str, object]:
        self.asked += 1
        return self.config


@pytest.mark.parametrize(("containerd", "dump"), [("2.4.0-beta.0", "version = 4"), ("1.7.24", "version = 2")])
def test_check_2_reads_the_dump_and_asks_the_cri_only_where_1x_reports_the_image(containerd, dump):
    from podinfra.suite import test_checks
    from podinfra.suite.node import CRI

    found = node(containerd, "1.37")
    image = found.expect.sandbox_image
    key = (
        "[plugins.'io.containerd.cri.v1.images'.pinned_images]\nsandbox = "
        if dump == "version = 4"
        else "[plugins.'io.containerd.grpc.v1.cri']\nsandbox_image = "
    )
    found.shown["daemon"] = f"pid=1\nstarted=0 0 100\nconfig=/c.toml\n--- dump\n{dump}\n{key}'{image}'\n"
    status = FakeRuntime({"containerd": {"snapshotter": "overlayfs"}, "containerdRootDir": "/var/lib/containerd"})
    record = catalogue.catalogue("2").result()
    test_checks.test_running_runtime_uses_the_sandbox_image(found, CRI(status, "/run/containerd.sock"), record)  # type: ignore[arg-type]
    assert record.status == "pass", record.actual
    assert status.asked == (0 if containerd.startswith("2.") else 1)
