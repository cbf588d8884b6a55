"""The README's examples, run as an operator would, each on a fresh fleet (the nodes reset, the
registry host as the lab made it) in one run: podinfra installed by the README's install block into a
virtualenv outside the checkout, the README's inventory ``mine.py`` under its own group names (hosts
named apart from their addresses), the deploy file, the offline and the mirror commands, the check,
where check 8 must pass. And ``--dry`` of every deploy on a fresh fleet changes no file anywhere.

What differs from the README, and only that: the inventory's REGISTRY, WORKERS, SSH and PKI lines are
the lab's (SSH adding the lab's upstream as pause_source, standing in for registry.k8s.io); the
commands' registry address and PKI directory follow; `podinfra export` and `mirror` read the lab's
upstream (`--source 127.0.0.1:PORT --source-insecure`); the install block builds this checkout.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import LINES, reset_nodes, ssh

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
# <!-- example: file NAME --> or <!-- example: run NAME --> just above a fenced block
EXAMPLE = re.compile(r"<!-- example: (file|run) (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)
# What --dry must leave as it was on the lab's hosts: every file podinfra's deploys write, and the services.
NODE_STATE = (
    "find /etc/containerd /etc/podinfra /etc/crio /etc/containers /var/lib/kubelet /etc/docker /etc/nginx "
    "/var/lib/docker-registry -xdev -exec stat -c '%n %a %U %G %s' {} + -type f -exec sha256sum {} + 2>/dev/null "
    "| sort; ctr -n k8s.io images ls -q 2>/dev/null | sort; systemctl is-active containerd docker-registry nginx; true"
)


def examples() -> dict[str, str]:
    """Every example block of the README by name ("mine.py", "online", ...)."""
    found = {name: text for _, name, text in EXAMPLE.findall((REPO / "README.md").read_text())}
    assert set(found) >= {"install", "mine.py", "secrets", "deploy.py", "online", "offline", "mirror"}, found
    return found


def commands(name: str) -> list[str]:
    return [line for line in examples()[name].splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv outside the checkout, podinfra installed into it by the README's install block (run in
    a directory of its own, with `.`, the checkout, named by its path)."""
    top = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "venv", str(top / "venv")], check=True)
    env = {**os.environ, "PATH": f"{top / 'venv/bin'}:{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for command in commands("install"):
        words = [str(REPO) if word == "." else word for word in shlex.split(command)]
        result = subprocess.run(words, cwd=top, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return top / "venv/bin"


def fresh_registry_host(ssh_config: Path) -> None:
    """The registry host back as the lab made it: its services off, podinfra's files and the blobs gone."""
    ssh(
        ssh_config,
        "registry",
        "systemctl disable --now docker-registry nginx >/dev/null 2>&1; rm -rf /etc/podinfra /var/lib/docker-registry"
        " /etc/nginx/conf.d/podinfra-registry.conf; ln -sf /etc/nginx/sites-available/default"
        " /etc/nginx/sites-enabled/default",
    )


class Operator:
    """A working directory of the operator's: the README's mine.py for the lab, its secrets, podinfra on PATH."""

    def __init__(self, lab: dict[str, Any], installed: Path, work: Path) -> None:
        self.lab, self.work, self.pki = lab, work, work / "pki"
        self.registry = next(n["address"] for n in lab["nodes"] if n["group"] == "registry")
        work.mkdir()
        self.env = {**os.environ, "PATH": f"{installed}:{os.environ['PATH']}"}
        self.env.pop("PODINFRA_LAB", None)
        (work / "mine.py").write_text(self.inventory())
        self.run("secrets")

    def inventory(self) -> str:
        """The README's mine.py with the lab's addresses, SSH data and PKI directory."""
        workers = {f"worker-{name[-1]}": n["address"] for n in self.lab["nodes"] if (name := n["name"]) in LINES}
        ssh_data = {
            "ssh_user": "root",
            "ssh_key": self.lab["ssh"]["key"],
            "ssh_known_hosts_file": self.lab["ssh"]["known_hosts"],
            "ssh_strict_host_key_checking": "yes",
            "pause_source": self.lab["upstream"],  # registry.k8s.io's stand-in
            "pause_source_insecure": True,
        }
        text = examples()["mine.py"]
        lines = (("REGISTRY", self.registry), ("WORKERS", workers), ("SSH", ssh_data), ("PKI", str(self.pki)))
        for name, value in lines:
            text, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, count=1, flags=re.MULTILINE)
            assert count == 1, f"the README's inventory has no {name} line"
        return text

    def command(self, command: str) -> subprocess.CompletedProcess[str]:
        command = command.replace("10.20.0.5", self.registry).replace("/var/lib/podinfra/pki", str(self.pki))
        if command.startswith(("podinfra export", "podinfra mirror")):
            command += f" --source {self.lab['upstream']} --source-insecure"
        result = subprocess.run(command, shell=True, cwd=self.work, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def run(self, example: str) -> list[subprocess.CompletedProcess[str]]:
        return [self.command(line) for line in commands(example)]


def passed_with_check_8(result: subprocess.CompletedProcess[str]) -> None:
    """Every node passed, and check 8 (the probe image beside pause) passed on each, not WARN."""
    report = result.stdout
    nodes = len(LINES)
    assert f"{nodes} nodes: {nodes} passed, 0 failed" in report, report
    for worker in (f"worker-{name[-1]}" for name in LINES):
        row = re.search(rf"^{worker} +(.*)$", report, re.MULTILINE)
        assert row and row[1].split()[7] == "pass", report  # the columns are checks 1 to 9


@pytest.fixture
def fresh(lab, ssh_config) -> None:
    reset_nodes()
    fresh_registry_host(ssh_config)


def test_the_deploy_file_makes_a_fresh_fleet_pass_in_one_run_and_then_the_mirror_commands(
    lab, ssh_config, installed, tmp_path, fresh
):
    operator = Operator(lab, installed, tmp_path / "operator")
    (operator.work / "deploy.py").write_text(examples()["deploy.py"])
    deploy, check = operator.run("online")
    assert commands("online")[-1].startswith("podinfra check"), "the block ends with the check"
    passed_with_check_8(check)
    again = operator.command(commands("online")[0])
    output = again.stdout + again.stderr
    total = re.search(r"Grand total +(\d+) +(\S+) +(\S+) +(\d+)", output)
    assert total and total[2] == "-" and total[3] == "-", output  # a second run changes nothing
    # The mirror section's commands, on the registry this run made: then every node still passes.
    results = operator.run("mirror")
    assert "3.10.2" in results[0].stdout  # podinfra versions
    passed_with_check_8(operator.command(commands("online")[-1]))


def test_the_offline_commands_from_an_installed_wheel_pass_every_check(lab, ssh_config, installed, tmp_path, fresh):
    operator = Operator(lab, installed, tmp_path / "operator")
    results = operator.run("offline")
    assert commands("offline")[-1].startswith("podinfra check"), "the block ends with the check"
    passed_with_check_8(results[-1])
    # The installed package, not the checkout: its files come from the virtualenv.
    where = subprocess.run(
        [str(installed / "python"), "-c", "import podinfra.render as r; print(r.TEMPLATES)"],
        capture_output=True, text=True, cwd=operator.work, check=True,
    ).stdout  # fmt: skip
    assert str(installed.parent) in where and not where.startswith(str(REPO))
    password = (operator.work / "secrets/pull.pw").read_text().strip()
    hosts = ssh(ssh_config, "node2", "cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
    assert 'Authorization = "Basic ' in hosts and password not in hosts


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_dry_runs_of_every_deploy_leave_the_control_host_and_the_fleet_byte_for_byte(
    lab, ssh_config, installed, tmp_path, fresh
):
    operator = Operator(lab, installed, tmp_path / "operator")
    (operator.work / "deploy.py").write_text(examples()["deploy.py"])
    hosts = ("registry", *LINES)
    before = {host: ssh(ssh_config, host, NODE_STATE).stdout for host in hosts}
    control = tree(operator.work)
    runs = [
        "pyinfra --dry mine.py deploy.py",
        "pyinfra --dry mine.py podinfra.deploys.local_registry --limit k8s_registry",
        "pyinfra --dry mine.py podinfra.deploys.pause_mirror --limit k8s_registry"
        " --data podinfra_node_group=k8s_workers",
        "pyinfra --dry mine.py podinfra.deploys.node_runtime --limit k8s_workers",
    ]
    outputs = [(result := operator.command(run)).stdout + result.stderr for run in runs]
    assert f"would create podinfra's CA in {operator.pki}" in outputs[0], outputs[0]
    assert not operator.pki.exists() and tree(operator.work) == control
    for host in hosts:
        assert ssh(ssh_config, host, NODE_STATE).stdout == before[host], host
