"""Mirror on the lab: upstream (host loopback) -> the registry node made by deploys/registry.py
(TLS from podinfra's CA + htpasswd) -> an air-gapped node pulling the canonical name."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import LAB, changes, podinfra, pyinfra, ssh

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def local_registry(lab):
    deploy = pyinfra(lab, "registry", "1.31", "--limit", "registry")
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    pki = Path(f"/var/lib/podinfra/{LAB}/pki")
    users = json.loads((pki / "registry" / "users.json").read_text())
    password_file = pki / "push.password"
    password_file.write_text(users["push"])
    address = next(n["address"] for n in lab["nodes"] if n["group"] == "registry")
    return {"host": f"{address}:5000", "ca": str(pki / "ca.crt"), "users": users, "password_file": str(password_file)}


def mirror(lab, local, *extra: str) -> subprocess.CompletedProcess[str]:
    return podinfra(
        "mirror", "--source", lab["upstream"], "--source-insecure", "--to", local["host"], "--ca-file", local["ca"],
        "--username", "push", "--password-file", local["password_file"], *extra, check=False,
    )  # fmt: skip


def skopeo_raw(ref: str, *options: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", *options, f"docker://{ref}"], capture_output=True, check=True
    ).stdout


def test_mirror_into_the_tls_registry_keeps_digests_and_reruns_send_nothing(lab, local_registry, tmp_path):
    # A prefix of its own, so what other modules mirrored before cannot hide this copy.
    prefix = f"run{uuid.uuid4().hex[:8]}"
    target = {**local_registry, "host": f"{local_registry['host']}/{prefix}"}
    first = mirror(lab, target, "--kubernetes-version", "1.31", "--kubernetes-version", "1.34", "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["changed"] and summary["blobs_uploaded"] + summary["blobs_mounted"] == 8
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text(Path(local_registry["ca"]).read_text())
    dest_opts = ("--cert-dir", str(certs), "--creds", f"pull:{local_registry['users']['pull']}")
    for tag in ("3.10", "3.10.1"):
        source = skopeo_raw(f"{lab['upstream']}/pause:{tag}", "--tls-verify=false")
        assert skopeo_raw(f"{target['host']}/pause:{tag}", *dest_opts) == source
        for child in json.loads(source)["manifests"]:
            digest = child["digest"]
            assert skopeo_raw(f"{target['host']}/pause@{digest}", *dest_opts) == skopeo_raw(
                f"{lab['upstream']}/pause@{digest}", "--tls-verify=false"
            )
    again = mirror(lab, target, "--kubernetes-version", "1.31", "--kubernetes-version", "1.34", "--json")
    summary = json.loads(again.stdout)
    assert (summary["bytes_sent"], summary["blobs_uploaded"], summary["blobs_mounted"], summary["changed"]) == (
        0, 0, 0, False
    )  # fmt: skip


def test_wrong_credentials_and_unknown_ca_are_one_line_errors(lab, local_registry, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    denied = podinfra(
        "mirror", "--source", lab["upstream"], "--source-insecure", "--kubernetes-version", "1.31",
        "--to", local_registry["host"], "--ca-file", local_registry["ca"], "--username", "push",
        "--password-file", str(wrong), check=False,
    )  # fmt: skip
    assert denied.returncode == 2
    assert denied.stderr.strip().splitlines()[-1] == (
        f"podinfra: registry {local_registry['host']} refused authentication: check the username and password"
    )
    assert "not-the-password" not in denied.stderr + denied.stdout
    untrusted = podinfra(
        "mirror", "--source", lab["upstream"], "--source-insecure", "--kubernetes-version", "1.31",
        "--to", local_registry["host"], check=False,
    )  # fmt: skip
    assert untrusted.returncode == 2
    assert "pass the registry's CA with --ca-file" in untrusted.stderr.strip().splitlines()[-1]


def test_an_air_gapped_node_pulls_the_canonical_name_through_the_mirror(lab, local_registry, ssh_config):
    """containerd asks the mirror for /v2/pause/...?ns=registry.k8s.io: images stored at `pause` answer it."""
    assert mirror(lab, local_registry, "--kubernetes-version", "1.31").returncode == 0
    auth = base64.b64encode(f"pull:{local_registry['users']['pull']}".encode()).decode()
    hosts_toml = (
        f'server = "https://{local_registry["host"]}"\n\n[host."https://{local_registry["host"]}"]\n'
        f'  capabilities = ["pull", "resolve"]\n  ca = "/etc/podinfra-test/ca.crt"\n'
        f'  [host."https://{local_registry["host"]}".header]\n    Authorization = "Basic {auth}"\n'
    )
    ca = base64.b64encode(Path(local_registry["ca"]).read_bytes()).decode()
    hosts = base64.b64encode(hosts_toml.encode()).decode()
    ssh(
        ssh_config,
        "node3",
        f"mkdir -p /etc/podinfra-test/certs.d/registry.k8s.io && echo {ca} | base64 -d > /etc/podinfra-test/ca.crt"
        f" && echo {hosts} | base64 -d > /etc/podinfra-test/certs.d/registry.k8s.io/hosts.toml",
    )
    pulled = ssh(
        ssh_config,
        "node3",
        "ctr -n podinfra-test images pull --hosts-dir /etc/podinfra-test/certs.d registry.k8s.io/pause:3.10"
        " && ctr -n podinfra-test images ls -q",
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert "registry.k8s.io/pause:3.10" in pulled.stdout
    digest = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{lab['upstream']}/pause:3.10"],
        capture_output=True,
        check=True,
    ).stdout
    listed = ssh(ssh_config, "node3", "ctr -n podinfra-test images ls").stdout
    assert "sha256:" + hashlib.sha256(digest).hexdigest() in listed
    ssh(ssh_config, "node3", "ctr -n podinfra-test images rm registry.k8s.io/pause:3.10; rm -rf /etc/podinfra-test")


def test_mirror_deploy_puts_upstream_digests_in_the_registry_and_then_changes_nothing(lab, local_registry, tmp_path):
    first = pyinfra(lab, "mirror", "1.26", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text(Path(local_registry["ca"]).read_text())
    held = skopeo_raw(
        f"{local_registry['host']}/pause:3.9",
        "--cert-dir",
        str(certs),
        "--creds",
        f"pull:{local_registry['users']['pull']}",
    )
    assert held == skopeo_raw(f"{lab['upstream']}/pause:3.9", "--tls-verify=false")
    second = pyinfra(lab, "mirror", "1.26", "--json")
    assert changes(second) == []


def test_bad_inventory_data_fails_before_any_host_is_touched(lab):
    result = pyinfra(lab, "mirror", "1.99", "--json")
    assert result.returncode != 0
    assert (
        "pause_tag" in result.stderr + result.stdout
        and "(1.24 to 1.37): set pause_tag" in result.stderr + result.stdout
    )
    assert "Beginning operation run" not in result.stderr + result.stdout


def test_a_local_registry_that_is_down_is_one_line_naming_it(lab, local_registry, ssh_config):
    ssh(ssh_config, "registry", "systemctl stop nginx")
    try:
        result = pyinfra(lab, "mirror", "1.31", "--json")
        assert result.returncode != 0
        expected = f"registry {local_registry['host']} is unreachable: check the address and that it is running"
        assert expected in result.stdout + result.stderr
        cli = mirror(lab, local_registry, "--kubernetes-version", "1.31")
        assert cli.returncode == 2 and cli.stderr.strip().splitlines()[-1] == f"podinfra: {expected}"
    finally:
        ssh(ssh_config, "registry", "systemctl start nginx")
