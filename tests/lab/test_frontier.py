"""The version frontier on the lab's real nodes: `podinfra check --upgrade-to 1.37` on a fleet at Kubernetes
1.35, before and after 3.10.2 is mirrored and the nodes are deployed at 1.37; a minor past the catalogue
with `pause_tag`; several config_path directories (containerd 2.2's own default), which containerd 2.1+'s
CRI pulls read as one directory, named by check 3 and replaced by the deploy.

The 1.x nodes are named by their line; the 2.x nodes pass and their daemons run pause 3.10.2.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from podinfra.check.cri import CRIError, Runtime, forwarded_socket

from .conftest import LAB, LINES, NODES, PODINFRA, changes, pyinfra, reset_nodes, sandbox_image, ssh

pytestmark = pytest.mark.lab
FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
OLD = [node for node, line in LINES.items() if line.startswith("1.")]
NEW = [node for node, line in LINES.items() if not line.startswith("1.")]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check(lab, tmp_path: Path, version: str, *extra: str) -> tuple[int, dict[str, dict[str, dict]], str]:
    """`podinfra check` at Kubernetes `version`: (exit code, node -> check id -> result, terminal output)."""
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    env = {**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": version}
    command = [*PODINFRA, "check", lab["inventory"], "--json", str(report), *extra]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    found = json.loads(report.read_text())
    by_node = {c["node"]: {r["test_number"]: r for r in c["tests"][0]["results"]} for c in found["Controls"]}
    return result.returncode, by_node, result.stdout


def node_state(ssh_config, node: str) -> str:
    return ssh(ssh_config, node, f"sha256sum /etc/containerd/config.toml {FLAGS}; containerd config dump").stdout


@pytest.fixture(scope="module")
def at_1_35(lab, ssh_config):
    reset_nodes()
    ok(pyinfra(lab, "registry", "1.35"))
    ok(pyinfra(lab, "mirror", "1.35"))
    ok(pyinfra(lab, "node", "1.35"))
    yield lab
    # Later modules start from a registry without 3.10.2 (they mirror it themselves, or prove it is missing).
    ssh(ssh_config, "registry", f"rm -rf {TAGS}/3.10.2")


TAGS = "/var/lib/docker-registry/docker/registry/v2/repositories/pause/_manifests/tags"


def test_upgrade_to_1_37_names_the_missing_pause_and_the_1x_lines_then_passes_on_2x(at_1_35, ssh_config, tmp_path):
    # A kubelet flag that the 1.37 kubelet refuses, on one 2.x node (the lab has no kubelet; the file stands for it).
    flagged = NEW[0]
    ssh(ssh_config, flagged, f"mkdir -p /var/lib/kubelet && echo 'KUBELET_KUBEADM_ARGS=\"--v=2 "
        f"--pod-infra-container-image=registry.k8s.io/pause:3.10.1\"' > {FLAGS}")  # fmt: skip
    before = {node: node_state(ssh_config, node) for node in NODES}
    code, results, out = check(at_1_35, tmp_path, "1.35", "--upgrade-to", "1.37")
    assert code == 1
    for node, line in LINES.items():
        mine = results[node]
        # check 4 already fails on the flagged node: the 1.35 kubelet refuses the flag too
        ok_now = [str(i) for i in range(1, 10) if not (node == flagged and i == 4)]
        assert all(mine[i]["status"] in ("PASS", "INFO", "WARN") for i in ok_now), (node, mine)
        assert mine["10"]["status"] == "FAIL", (node, mine["10"])
        assert mine["10"]["actual_value"].startswith("pause:3.10.2 for Kubernetes 1.37:"), mine["10"]
        assert "pause:3.10.2 is not in the registry" in mine["10"]["actual_value"]
        assert mine["11"]["status"] == ("FAIL" if node in OLD else "PASS"), (node, mine["11"])
        if node in OLD:
            assert f"(line {line}): Kubernetes 1.37 needs containerd 2.0 or later" in mine["11"]["actual_value"]
        assert mine["12"]["status"] == "INFO" and mine["14"]["status"] == "INFO"
        assert mine["13"]["status"] == ("FAIL" if node == flagged else "PASS"), (node, mine["13"])
    assert "will not start" in results[flagged]["13"]["actual_value"]
    assert "10 target pause" in out
    # Nothing on the nodes changed.
    assert {node: node_state(ssh_config, node) for node in NODES} == before
    ssh(ssh_config, flagged, f"rm -f {FLAGS}")

    ok(pyinfra(at_1_35, "mirror", "1.37"))
    ok(pyinfra(at_1_35, "node", "1.37"))  # 1.x nodes are deployed too: check 1 warns on them
    code, results, _ = check(at_1_35, tmp_path, "1.37", "--upgrade-to", "1.37")
    for node in NEW:
        failed = {i: r["actual_value"] for i, r in results[node].items() if r["status"] == "FAIL"}
        assert failed == {}, (node, failed)
        assert sandbox_image(ssh_config, node) == "registry.k8s.io/pause:3.10.2", node
    for node in OLD:
        assert [i for i, r in results[node].items() if r["status"] == "FAIL"] == ["11"], (node, results[node])
    assert code == (1 if OLD else 0)


def test_a_minor_past_the_catalogue_is_refused_naming_pause_tag_and_runs_with_it(at_1_35, ssh_config):
    refused = pyinfra(at_1_35, "node", "1.38", "--limit", NEW[-1])
    assert refused.returncode != 0
    assert (
        "Kubernetes 1.38 is not in podinfra's catalogue (1.24 to 1.37): set pause_tag to the tag kubeadm 1.38 uses"
        in refused.stdout + refused.stderr
    )
    given = ("--data", "pause_tag=3.10.2")
    ok(pyinfra(at_1_35, "mirror", "1.38", *given))
    ok(pyinfra(at_1_35, "node", "1.38", "--limit", NEW[-1], *given))
    assert sandbox_image(ssh_config, NEW[-1]) == "registry.k8s.io/pause:3.10.2"
    # a tag the local registry lacks is refused by the preflight, by digest, before the node is touched
    number = pyinfra(at_1_35, "node", "1.38", "--limit", NEW[-1], "--data", "pause_tag=3.99")
    assert number.returncode != 0 and "pause_tag=3.99: 3.99 is not a string: quote it" in number.stderr
    missing = pyinfra(at_1_35, "node", "1.38", "--limit", NEW[-1], "--data", 'pause_tag="3.99"')
    assert missing.returncode != 0 and "pause:3.99 is not in the registry" in missing.stdout + missing.stderr


def cri_pull(ssh_config, node: str, image: str) -> str:
    """The CRI's own pull of `image` on `node` (the transfer service on 2.1+): '' when it succeeds, else why not."""
    with forwarded_socket(ssh_config, node) as target:
        try:
            Runtime(target).pull(image)
        except CRIError as e:
            return str(e)
    return ""


def test_several_config_path_directories_leave_the_cri_without_hosts_toml_until_the_deploy(
    at_1_35, ssh_config, tmp_path
):
    # containerd 2.2's own default for an empty config_path lists two directories; elsewhere the file says so.
    node = next((n for n, line in LINES.items() if line == "2.2"), NEW[0])
    ok(pyinfra(at_1_35, "node", "1.35", "--limit", node))
    two = "/etc/containerd/certs.d:/etc/docker/certs.d"
    edit = "/config_path = /d" if LINES[node] == "2.2" else f"s|config_path = .*|config_path = '{two}'|"
    ssh(ssh_config, node, f'sed -i "{edit}" /etc/containerd/config.toml && systemctl restart containerd')
    code, results, _ = check(at_1_35, tmp_path, "1.35", "--limit", node)
    assert code == 1 and results[node]["3"]["status"] == "FAIL"
    assert f"reads config_path as one directory: '{two}' names none" in results[node]["3"]["actual_value"]
    # What that means: hosts.toml sits in the first directory, and yet the CRI's pull goes to registry.k8s.io.
    assert (
        ssh(ssh_config, node, "test -f /etc/containerd/certs.d/registry.k8s.io/hosts.toml", check=False).returncode == 0
    )
    assert "registry.k8s.io" in cri_pull(ssh_config, node, "registry.k8s.io/pause:3.10.1")
    deployed = ok(pyinfra(at_1_35, "node", "1.35", "--limit", node))
    assert f"config_path listed {two}" in deployed.stderr
    assert "config_path = '/etc/containerd/certs.d'" in ssh(ssh_config, node, "containerd config dump").stdout
    assert cri_pull(ssh_config, node, "registry.k8s.io/pause:3.10.1") == ""  # through the local registry
    code, results, _ = check(at_1_35, tmp_path, "1.35", "--limit", node)
    assert code == 0, {i: r for i, r in results[node].items() if r["status"] == "FAIL"}
    assert changes(ok(pyinfra(at_1_35, "node", "1.35", "--limit", node, "--json"))) == []
