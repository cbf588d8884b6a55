"""Checking nodes, two ways to the same verdict: `podinfra check` and the same suite (`podinfra.suite`) run the
way a testinfra user would, `pytest --hosts=... -n N --dist loadgroup` (pytest-xdist, a worker per node).

Each run is timed, and its control-host CPU read: user + system time of the command and of every process it
started, ssh included (see `children_cpu`); the rest of the machine's busy time over the same span is the
nodes' own work, since the lab's nodes share this machine's cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labtools
from labtools import INVENTORY, PODINFRA, Lab, run

from podinfra.check.catalogue import CHECKS

PYTEST = str(Path(PODINFRA).parent / "pytest")
TOOLS = ("podinfra", "xdist")
_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def available() -> str | None:
    """Why the check benchmark cannot run here, or None."""
    if run([PODINFRA, "check", "--help"]).returncode != 0:
        return "`podinfra check --help` fails: the command does not exist in this checkout."
    if run([PYTEST, "-p", "xdist", "--version"]).returncode != 0:
        return "pytest-xdist is not installed (the bench extra): pip install -e '.[bench]'"
    return None


@contextlib.contextmanager
def children_cpu() -> Iterator[list[float]]:
    """CPU seconds of the processes started inside the block, in the list it yields once the block is done.

    getrusage(RUSAGE_CHILDREN) counts only children that were waited for. ssh's ControlPersist masters (which
    `podinfra check`'s ssh_config asks for) detach from the command and would be reaped by init, their share
    of the SSH work uncounted; as a child subreaper for the while, this process adopts them and reaps them
    once the command has closed them."""
    libc = ctypes.CDLL(None, use_errno=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    found: list[float] = []
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield found
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break  # none left
            if pid == 0:  # an adopted process still closing
                time.sleep(0.05)
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)


def command(tool: str, lab: Lab, names: list[str], report: Path, workers: int = 0) -> tuple[list[str], Path]:
    """The command line and working directory of one check of `names`; pytest-xdist gets `workers` (a worker
    per node when 0)."""
    if tool == "podinfra":
        limits = [arg for name in names for arg in ("--limit", name)]
        return [PODINFRA, "check", INVENTORY, *limits, "--json", str(report)], labtools.REPO
    argv = [PYTEST, "-p", "podinfra.suite.plugin", "--pyargs", "podinfra.suite"]
    argv += [f"--hosts={','.join(f'ssh://{name}' for name in names)}", f"--ssh-config={lab.state.ssh_config}"]
    argv += [f"--podinfra-inventory={INVENTORY}", "-n", str(workers or len(names)), "--dist", "loadgroup", "-q"]
    # Run outside the checkout: there, pyproject.toml's pytest settings ignore the suite's test module.
    return [*argv, f"--junitxml={report}"], report.parent


def once(tool: str, lab: Lab, names: list[str], workdir: Path, workers: int = 0) -> tuple[float, str, dict[str, float]]:
    """Wall time, outcome, and CPU seconds: of the command ("control") and of the whole machine ("machine")."""
    report = workdir / f"check-{tool}.{'json' if tool == 'podinfra' else 'xml'}"
    report.unlink(missing_ok=True)
    argv, cwd = command(tool, lab, names, report, workers)
    machine = labtools.busy_cpu_seconds()
    with children_cpu() as control:
        start = time.perf_counter()
        result = run(argv, lab.env, cwd=cwd)
        seconds = time.perf_counter() - start
    cpu = {"control": control[0], "machine": labtools.busy_cpu_seconds() - machine}
    try:
        outcome = podinfra_outcome(report) if tool == "podinfra" else xdist_outcome(report, names)
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError):
        outcome = f"exit {result.returncode}, no report: {(result.stderr or result.stdout).strip()[-200:]}"
    return seconds, outcome, cpu


def podinfra_outcome(report: Path) -> str:
    """From kube-bench's JSON: a node passes when no check failed; the checks that did not pass, by status."""
    controls = json.loads(report.read_text())["Controls"]
    passed = sum(1 for control in controls if control["total_fail"] == 0)
    by_status: dict[str, set[str]] = {}
    for control in controls:
        for group in control["tests"]:
            for result in group["results"]:
                by_status.setdefault(result["status"], set()).add(result["test_number"])
    others = [f"{status} {','.join(sorted(by_status[status]))}" for status in ("FAIL", "WARN", "INFO")
              if status in by_status]  # fmt: skip
    return f"{passed}/{len(controls)} nodes pass" + (f" ({'; '.join(others)})" if others else "")


def xdist_outcome(report: Path, names: list[str]) -> str:
    """From pytest's JUnit XML: a node passes when each of its checks ran and none failed or errored."""
    ran = {name: 0 for name in names}
    failed: dict[str, list[str]] = {name: [] for name in names}
    for case in ET.parse(report).getroot().iter("testcase"):
        node = case.get("name", "").rpartition("[ssh://")[2].rstrip("]")
        if node in ran:
            ran[node] += 1
            if case.find("failure") is not None or case.find("error") is not None:
                failed[node].append(case.get("name", "").split("[")[0])
    passed = sum(1 for name in names if ran[name] == len(CHECKS) and not failed[name])
    detail = []
    if any(failed.values()):
        detail.append("failing: " + ", ".join(sorted({test for tests in failed.values() for test in tests})))
    missing = [name for name in names if ran[name] != len(CHECKS)]
    if missing:
        detail.append(f"not all {len(CHECKS)} checks ran on {', '.join(missing)}")
    return f"{passed}/{len(names)} nodes pass" + (f" ({'; '.join(detail)})" if detail else "")


def bench(lab: Lab, names: list[str], sizes: list[int], runs: int, workdir: Path) -> dict[str, Any]:
    """Per tool and size: wall seconds, control and machine CPU seconds of each run, the last run's outcome.
    Sizes and tools alternate (1 3 10 1 3 10 ..., podinfra then xdist at each)."""
    data: dict[str, Any] = {
        tool: {str(size): {"seconds": [], "control_cpu": [], "machine_cpu": [], "outcome": ""} for size in sizes}
        for tool in TOOLS
    }
    for i in range(runs):
        for size in sizes:
            for tool in TOOLS:
                labtools.progress(f"check run {i + 1}/{runs}: {size} node(s), {tool}")
                seconds, outcome, cpu = once(tool, lab, names[:size], workdir)
                row = data[tool][str(size)]
                row["seconds"].append(seconds)
                row["control_cpu"].append(cpu["control"])
                row["machine_cpu"].append(cpu["machine"])
                row["outcome"] = outcome
    return data
