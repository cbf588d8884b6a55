"""deploys/registry.py on a real lab host: docker-registry on loopback behind nginx (HTTPS from podinfra's
CA, htpasswd users), a pull user that cannot write, file modes, idempotence."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import changes, pyinfra, ssh
from .conftest import totals as pyinfra_totals

pytestmark = pytest.mark.lab

USERS = {"pull": "pull-lab-password", "push": "push-lab-password"}


def deploy(lab: dict[str, Any], *data: str) -> subprocess.CompletedProcess[str]:
    # The lab's PKI lives in the lab's own tree, so `lab down` removes it with everything else.
    pki = Path(lab["state_root"]) / lab["lab"] / "pki"
    args = [f"podinfra_pki_dir={pki}", f"registry_users={json.dumps(USERS)}", *data]
    return pyinfra(lab, "registry", "1.31", "--json", *(a for arg in args for a in ("--data", arg)))


def totals(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return pyinfra_totals(result)


@pytest.fixture(scope="module")
def deployed(lab: dict[str, Any], ssh_config: Path) -> Iterator[dict[str, str]]:
    first = totals(deploy(lab))
    assert first["error"] == 0 and first["success"] > 0
    address = next(n["address"] for n in lab["nodes"] if n["group"] == "registry")
    yield {
        "url": f"https://{address}:5000/v2/",
        "ca": str(Path(lab["state_root"]) / lab["lab"] / "pki" / "ca.crt"),
        "address": address,
    }
    # Leave the host as the lab made it: the packages installed, not running; the lab's own users back.
    ssh(ssh_config, "registry", "systemctl disable --now docker-registry nginx")


def test_bad_data_fails_before_anything_changes(lab, ssh_config):
    config = "sha256sum /etc/docker/registry/config.yml 2>/dev/null; true"
    before = ssh(ssh_config, "registry", config).stdout
    result = deploy(lab, "registry_port=abc")
    assert result.returncode != 0
    assert "registry_port='abc': use a port number from 1 to 65535" in result.stderr
    assert "Starting operation" not in result.stderr
    assert ssh(ssh_config, "registry", config).stdout == before


def test_registry_answers_over_tls_and_wants_credentials(deployed):
    assert requests.get(deployed["url"], verify=deployed["ca"], timeout=10).status_code == 401
    assert requests.get(deployed["url"], verify=deployed["ca"], auth=("pull", "wrong"), timeout=10).status_code == 401
    for user, password in USERS.items():
        answer = requests.get(deployed["url"], verify=deployed["ca"], auth=(user, password), timeout=10)
        assert answer.status_code == 200, user
        assert answer.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_the_registry_itself_listens_on_loopback_only(deployed, ssh_config):
    listening = ssh(ssh_config, "registry", "ss -ltnp").stdout
    registry = [line for line in listening.splitlines() if "docker-registry" in line]
    assert registry and all("127.0.0.1:5001" in line for line in registry), registry
    assert any(":5000 " in line and "nginx" in line for line in listening.splitlines())
    # from a node: nothing answers on the registry's own port
    refused = ssh(ssh_config, "node1", f"curl -sS -m 3 http://{deployed['address']}:5001/v2/", check=False)
    assert refused.returncode != 0


def test_the_pull_user_cannot_write_and_the_push_user_can(deployed):
    pull, push = ("pull", USERS["pull"]), ("push", USERS["push"])
    base = deployed["url"]
    for method, path in (
        ("POST", "pause/blobs/uploads/"),
        ("PUT", "pause/manifests/x"),
        ("DELETE", "pause/manifests/x"),
    ):
        answer = requests.request(method, base + path, verify=deployed["ca"], auth=pull, timeout=10)
        assert answer.status_code == 403, (method, answer.status_code)
    started = requests.post(base + "pause/blobs/uploads/", verify=deployed["ca"], auth=push, timeout=10)
    assert started.status_code == 202
    assert started.headers["Location"].startswith(f"https://{deployed['address']}:5000/v2/pause/blobs/uploads/")
    requests.delete(started.headers["Location"], verify=deployed["ca"], auth=push, timeout=10)


def test_key_and_htpasswd_are_for_the_services_only(deployed, ssh_config):
    modes = {
        "/etc/podinfra/registry/tls.key": "600 root root",
        "/etc/podinfra/registry/htpasswd": "640 root www-data",
    }
    for path, mode in modes.items():
        assert ssh(ssh_config, "registry", f"stat -c '%a %U %G' {path}").stdout.split() == mode.split()
        assert ssh(ssh_config, "registry", f"runuser -u nobody -- cat {path}", check=False).returncode != 0
    assert ssh(ssh_config, "registry", "runuser -u www-data -- test -r /etc/podinfra/registry/htpasswd").returncode == 0
    assert ssh(ssh_config, "registry", "systemctl is-enabled docker-registry nginx").stdout.split() == ["enabled"] * 2


def test_second_run_changes_nothing(lab, deployed):
    again = deploy(lab)
    assert again.returncode == 0, again.stderr
    assert changes(again) == []
