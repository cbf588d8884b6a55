"""`podinfra demo`: the whole story on the built-in lab, each step a command a user can run.

lab up -> deploys/registry.py -> deploys/mirror.py -> deploys/node.py -> podinfra check.
Each deploy runs as ``pyinfra -y --json`` and the demo prints what it changed, so a second
run shows zero changes everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from podinfra import table, versions
from podinfra.deploys import json_output
from podinfra.errors import PodinfraError
from podinfra.lab import lifecycle
from podinfra.lab.state import DEFAULT_LINES, LabConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(message, flush=True)


class StepFailed(PodinfraError, RuntimeError):
    pass


def deploy(name: str, env: dict[str, str]) -> dict[str, int]:
    """Run one deploy on the lab inventory; returns pyinfra's totals."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "pyinfra"), "-y", "--json", "inventories/lab.py", f"deploys/{name}.py"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        totals = json_output.totals(result.stdout)
    except ValueError:
        totals = {}
    if result.returncode != 0 or totals.get("error"):
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise StepFailed(f"deploys/{name}.py failed:\n{tail}")
    took = time.monotonic() - started
    say(f"    {totals.get('success', 0)} changed, {totals.get('no_change', 0)} unchanged ({took:.1f}s)")
    return totals


def main(args: Any) -> int:
    """`podinfra demo`: the lab's containerd lines default to those the Kubernetes version supports."""
    versions.pause_tag(
        args.kubernetes_version, "the demo runs a minor of the catalogue"
    )  # an unsupported version stops here, before the lab is touched
    lines = args.containerd or tuple(
        line for line in DEFAULT_LINES if versions.containerd_supported(args.kubernetes_version, line)
    )
    return run(LabConfig(nodes=args.nodes, runtimes=lines), args.kubernetes_version)


def run(config: LabConfig, kubernetes_version: str) -> int:
    say(
        f"== 1/5 lab: {config.nodes} nodes (containerd {', '.join(config.runtimes)}), a registry node, "
        "an upstream registry (podinfra lab up)"
    )
    lifecycle.up(config)
    env = {**os.environ, "PODINFRA_LAB": config.name, "PODINFRA_KUBERNETES_VERSION": kubernetes_version}
    steps = [
        (
            "registry",
            "local registry on node 'registry': nginx (TLS, users, read-only pulls) in front of docker-registry "
            "(pyinfra inventories/lab.py deploys/registry.py)",
        ),
        ("mirror", f"pause for Kubernetes {kubernetes_version} and the check's probe into it (deploys/mirror.py)"),
        ("node", "containerd on every node takes its sandbox image from it (deploys/node.py)"),
    ]
    changes = {}
    for number, (name, what) in enumerate(steps, start=2):
        say(f"== {number}/5 {what}")
        changes[name] = deploy(name, env)["success"]
    say("== 5/5 compliance checks on every node (podinfra check inventories/lab.py)")
    check = subprocess.run([str(BIN / "podinfra"), "check", "inventories/lab.py"], cwd=REPO, env=env)
    say("")
    say(table.render(("STEP", "CHANGES"), [(f"deploys/{name}.py", count) for name, count in changes.items()]))
    ssh = lifecycle.status(config.name)["ssh"]["config"]
    say(
        f"\nInspect a node:   ssh -F {ssh} node1 containerd config dump | grep -E 'sandbox(_image)? ='\n"
        f"Run again:        ./run demo   (a second run changes nothing)\n"
        f"Tear down:        {BIN / 'podinfra'} lab down" + (f" --name {config.name}" if config.name != "lab" else "")
    )
    return check.returncode
