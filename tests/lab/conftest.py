"""Real labs for the integration tests, each on its own subnet: `lab`, 5 nspawn nodes, one per containerd line
(1.6, 1.7, 2.1 from Debian, 2.2 and 2.3 from release tarballs), plus the registry node; `crio_lab`, a containerd
2.1 node and a CRI-O node, plus its registry node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podinfra.deploys import json_output

# Two checkouts can run their lab tests at once, each on a lab of its own: PODINFRA_TEST_LAB=NAME:THIRD_OCTET.
LAB, _OCTET = os.environ.get("PODINFRA_TEST_LAB", "citest:1").split(":")
SUBNET, UPSTREAM_PORT = f"10.213.{_OCTET}.0/24", str(5100 + int(_OCTET))
REGISTRY = f"10.213.{_OCTET}.2:5000"
# node -> its containerd line (lab up gives the lines to the nodes in turn)
LINES = {"node1": "1.6", "node2": "1.7", "node3": "2.1", "node4": "2.2", "node5": "2.3"}
NODES = tuple(LINES)
LAB_ARGS = ("--name", LAB, "--nodes", str(len(LINES)), "--containerd", ",".join(LINES.values()))
LAB_ARGS += ("--subnet", SUBNET, "--upstream-port", UPSTREAM_PORT)
# The CRI-O lab: node -> its runtime, on the slot's octet + 100 (a name of at most 10 letters or digits).
CRIO_LAB, _CRIO_OCTET = f"{LAB[:6]}crio", int(_OCTET) + 100
CRIO_RUNTIMES = {"node1": "2.1", "node2": "cri-o"}
CRIO_LAB_ARGS = ("--name", CRIO_LAB, "--nodes", "2", "--runtimes", ",".join(CRIO_RUNTIMES.values()))
CRIO_LAB_ARGS += ("--subnet", f"10.213.{_CRIO_OCTET}.0/24", "--upstream-port", str(5100 + _CRIO_OCTET))
PODINFRA = [sys.executable, "-m", "podinfra.cli"]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
# Makes a node's containerd refuse any config naming pause 3.10.1, as a broken config would; HEAL undoes it.
REFUSE = (
    "mv /usr/bin/containerd /usr/bin/containerd.real && printf '%s\\n' '#!/bin/sh'"
    " 'if [ \"$1\" != --version ] && grep -q pause:3.10.1 /etc/containerd/config.toml; then'"
    " 'echo \"config rejected\" >&2; exit 1; fi' 'exec /usr/bin/containerd.real \"$@\"'"
    " > /usr/bin/containerd && chmod 755 /usr/bin/containerd"
)
HEAL = "mv -f /usr/bin/containerd.real /usr/bin/containerd"


def podinfra(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODINFRA, *args], capture_output=True, text=True)
    assert not check or result.returncode == 0, f"podinfra {' '.join(args)} failed:\n{result.stderr}"
    return result


def pyinfra(lab: dict[str, Any], deploy: str, version: str = "1.31", *extra: str, **popen: Any) -> Any:
    """``pyinfra -y EXTRA INVENTORY deploys/DEPLOY.py`` on the test lab for Kubernetes `version`;
    with Popen keywords the run is started and its process returned."""
    command = [PYINFRA, "-y", *extra, lab["inventory"], f"deploys/{deploy}.py"]
    env = {**os.environ, "PODINFRA_LAB": LAB, "PODINFRA_KUBERNETES_VERSION": version}
    if popen:
        return subprocess.Popen(command, env=env, text=True, **popen)
    return subprocess.run(command, capture_output=True, text=True, env=env)


def totals(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """pyinfra's ``--json`` totals: ``success`` counts operations that changed something."""
    return json_output.totals(result.stdout)


def changes(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What a pyinfra ``--json`` run changed or failed, as "HOST: OPERATION (error)"."""
    return json_output.changes(result.stdout)


def leftovers(root: str, bridge: str) -> list[str]:
    """Everything a lab can leave behind: processes, mounts, the bridge, its tree. Paths are matched below
    `root/`, so another lab whose name `root`'s starts (citest, citestcrio) is not taken for this one."""
    below = root.rstrip("/") + "/"
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if below.encode() in proc.joinpath("cmdline").read_bytes() + proc.joinpath("mountinfo").read_bytes():
                    found.append(f"process {proc.name}")
            except OSError:
                pass
    found += [
        f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines() if below in line
    ]
    if Path(f"/sys/class/net/{bridge}").exists():
        found.append(f"bridge {bridge}")
    if Path(root).exists():
        found.append(f"tree {root}")
    return found


def _lab(name: str, args: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Lab `name` brought up afresh with `args`, its status (with `up_seconds`), then brought down."""
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root")
    podinfra("lab", "down", "--name", name)
    started = time.monotonic()
    up = podinfra("lab", "up", *args, check=False)
    assert up.returncode == 0, up.stderr
    status = json.loads(podinfra("lab", "status", "--name", name, "--json").stdout)
    status["up_seconds"] = round(time.monotonic() - started, 1)
    # Later modules deploy the registry; what the lab itself booted is recorded here.
    config = Path(status["ssh"]["config"])
    status["registry_service_at_boot"] = " ".join(
        ssh(config, "registry", "systemctl is-active docker-registry nginx", check=False).stdout.split()
    )
    yield status
    podinfra("lab", "down", "--name", name)
    assert leftovers(f"/var/lib/podinfra/{name}", status["bridge"]["name"]) == []


@pytest.fixture(scope="session")
def lab() -> Iterator[dict[str, Any]]:
    yield from _lab(LAB, LAB_ARGS)


@pytest.fixture(scope="session")
def crio_lab() -> Iterator[dict[str, Any]]:
    """A containerd 2.1 node (node1) and a CRI-O 1.36 node (node2); PODINFRA_LAB=CRIO_LAB for its inventory."""
    yield from _lab(CRIO_LAB, CRIO_LAB_ARGS)


def reset_nodes(name: str = LAB) -> None:
    """Nodes back to lab-fresh: modules that deploy start from the same state whatever ran before."""
    podinfra("lab", "reset", "--name", name)


@pytest.fixture(scope="session")
def ssh_config(lab: dict[str, Any]) -> Path:
    return Path(lab["ssh"]["config"])


def ssh(config: Path, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(config), host, command], capture_output=True, text=True, check=check)


def dump(config: Path, node: str) -> str:
    return ssh(config, node, "containerd config dump").stdout


def sandbox_image(config: Path, node: str) -> str:
    """The sandbox image in the node's effective config, on every line (1.x `sandbox_image = "..."`,
    2.x `sandbox = '...'`)."""
    import re

    found = re.search(r"^\s*sandbox(?:_image)? = ['\"]([^'\"]*)['\"]", dump(config, node), re.MULTILINE)
    assert found, f"no sandbox image in {node}'s config dump"
    return found[1]
