"""On demand, not in CI (`pytest -m fleet tests/lab/test_fleet.py -s`): a fleet-size lab, 150 nodes on containerd
2.1 unless PODINFRA_FLEET_NODES says otherwise, on a lab of its own (PODINFRA_FLEET_LAB=NAME:SUBNET:PORT, default
fleet:10.213.128.0/17:5199): registry, mirror and node deploys (restart_batch "10%"), the node deploy again
changing nothing, then `podinfra check` twice in a row with no FAIL on any node. Each step's seconds are
printed. About 4 GB and 12 minutes here; the lab is brought down at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import PODINFRA, PYINFRA, changes

pytestmark = pytest.mark.fleet
NAME, SUBNET, PORT = os.environ.get("PODINFRA_FLEET_LAB", "fleet:10.213.128.0/17:5199").split(":")
NODES = int(os.environ.get("PODINFRA_FLEET_NODES", "150"))
TIMES: dict[str, float] = {}


def timed(step: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    TIMES[step] = round(time.monotonic() - started, 1)
    print(f"[fleet] {NODES} nodes: {step}: {TIMES[step]} s (rc {result.returncode})", flush=True)
    return result


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, Any]]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root")
    subprocess.run([*PODINFRA, "lab", "down", "--name", NAME], capture_output=True)
    args = ["--name", NAME, "--nodes", str(NODES), "--subnet", SUBNET, "--upstream-port", PORT, "--containerd", "2.1"]
    try:
        up = timed("lab up", [*PODINFRA, "lab", "up", *args])
        assert up.returncode == 0, up.stderr[-3000:]
        status = json.loads(subprocess.run([*PODINFRA, "lab", "status", "--name", NAME, "--json"],
                                           capture_output=True, text=True, check=True).stdout)  # fmt: skip
        yield status
    finally:
        subprocess.run([*PODINFRA, "lab", "down", "--name", NAME], capture_output=True)
        print(f"[fleet] {NODES} nodes: {json.dumps(TIMES)}", flush=True)


def deploy(fleet: dict[str, Any], name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODINFRA_LAB": NAME, "PODINFRA_KUBERNETES_VERSION": "1.31"}
    step = " ".join([f"deploys/{name}.py", *(arg for arg in extra if "=" in arg)])
    result = timed(step, [PYINFRA, "-y", *extra, fleet["inventory"], f"deploys/{name}.py"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_a_fleet_deploys_then_checks_twice_with_no_fail(fleet, tmp_path):
    deploy(fleet, "registry")
    deploy(fleet, "mirror")
    batches = ("--data", "restart_batch=10%", "--data", "max_failed_nodes=2%")
    deploy(fleet, "node", "--json", *batches)
    again = deploy(fleet, "node", "--json", *batches)
    assert changes(again) == []
    env = {**os.environ, "PODINFRA_LAB": NAME, "PODINFRA_KUBERNETES_VERSION": "1.31"}
    for run in (1, 2):
        report, log = tmp_path / f"check{run}.json", tmp_path / f"check{run}.log"
        command = [*PODINFRA, "check", fleet["inventory"], "--json", str(report), "--log", str(log)]
        check = timed(f"podinfra check {run}", command, env)
        assert check.returncode == 0, check.stdout[-5000:] + check.stderr[-3000:]
        totals = json.loads(report.read_text())["Totals"]
        print(f"[fleet] check {run}: {totals}; {check.stdout.splitlines()[-8:]}", flush=True)
        assert totals["total_fail"] == 0
        assert len(log.read_text().splitlines()) == NODES
