"""The README's own-fleet section, run as an operator would: podinfra built as a wheel and installed into
a fresh virtualenv outside the checkout, the README's inventory (its own group names, hosts named apart
from their addresses) and the README's commands, the offline export/import path, then every check.

What differs from the README, and only that: the inventory's addresses, SSH data and PKI directory
are the lab's; `pip install podinfra` is the wheel built here; and `podinfra export` reads the lab's
upstream (`--source 127.0.0.1:5101 --source-insecure`), standing in for registry.k8s.io.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LINES, reset_nodes, ssh

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARK = "<!-- own-fleet commands: tests/lab/test_own_fleet.py runs this block -->"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def readme_commands() -> list[str]:
    after = README.read_text().split(MARK, 1)[1]
    return [line for line in blocks(after, "sh")[0].splitlines() if line.strip() and not line.startswith("#")]


def readme_inventory() -> str:
    section = README.read_text().split("## On your own fleet", 1)[1]
    return next(block for block in blocks(section, "python") if block.startswith("# mine.py"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv outside the checkout with only the built wheel (and what it depends on) installed."""
    top = tmp_path_factory.mktemp("installed")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(top / "dist"), str(REPO)], check=True
    )
    wheel = next((top / "dist").glob("podinfra-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(top / "venv")], check=True)
    subprocess.run([str(top / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel)], check=True)
    return top / "venv/bin"


def operator_inventory(lab, pki: Path) -> str:
    """The README's mine.py with the lab's addresses and SSH data in place of the example's."""
    registry = next(n["address"] for n in lab["nodes"] if n["group"] == "registry")
    workers = {f"worker-{name[-1]}": n["address"] for n in lab["nodes"] if (name := n["name"]) in LINES}
    ssh_data = {
        "ssh_user": "root",
        "ssh_key": lab["ssh"]["key"],
        "ssh_known_hosts_file": lab["ssh"]["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
    }
    text = readme_inventory()
    for name, value in (("REGISTRY", registry), ("WORKERS", workers), ("SSH", ssh_data), ("PKI", str(pki))):
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, count=1, flags=re.MULTILINE)
        assert count == 1, f"the README's inventory has no {name} line"
    return text


def test_the_readmes_own_fleet_commands_from_an_installed_wheel_pass_every_check(lab, installed, tmp_path):
    reset_nodes()
    work = tmp_path / "operator"
    work.mkdir()
    pki = work / "pki"
    (work / "mine.py").write_text(operator_inventory(lab, pki))
    registry = next(n["address"] for n in lab["nodes"] if n["group"] == "registry")
    env = {**os.environ, "PATH": f"{installed}:{os.environ['PATH']}"}
    env.pop("PODINFRA_LAB", None)
    for command in readme_commands():
        if command.startswith("pip install podinfra"):
            continue  # the fixture installed the wheel
        command = command.replace("10.20.0.5", registry).replace("/var/lib/podinfra/pki", str(pki))
        if command.startswith("podinfra export"):
            command += f" --source {lab['upstream']} --source-insecure"
        result = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True)
        where = f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, where
        if command.startswith("podinfra check"):
            report = result.stdout
            # no kubelet on the lab's nodes (check 4: INFO); containerd 1.6.20's pins are the one warning
            assert "3 nodes: 3 passed, 0 failed (checks: 23 pass, 0 fail, 1 warn, 3 info)" in report, report
            assert re.search(r"^worker-1 +pass", report, re.MULTILINE), report
    assert shlex.split(readme_commands()[-1])[:2] == ["podinfra", "check"], "the block ends with the check"
    # The installed package, not the checkout: its files come from the virtualenv.
    where = subprocess.run(
        [str(installed / "python"), "-c", "import podinfra.node.runtime_files as r; print(r.TEMPLATES)"],
        capture_output=True, text=True, cwd=work, check=True,
    ).stdout  # fmt: skip
    assert str(installed.parent) in where and not where.startswith(str(REPO))
    password = (work / "secrets/pull.pw").read_text().strip()
    hosts = ssh(Path(lab["ssh"]["config"]), "node2", "cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml").stdout
    assert 'Authorization = "Basic ' in hosts and password not in hosts
