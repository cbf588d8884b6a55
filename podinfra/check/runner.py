"""Run the node suite (``podinfra.suite``) once per node, all at once, each run forked from this process.

Most of a run's CPU time was imports: pytest, testinfra and the suite are imported here once
(``PRELOAD``), and every node's run is a fork that has them already. What each node must show is
handed to its run in memory, as a pytest plugin object (:class:`podinfra.suite.node.Expected`).
"""

from __future__ import annotations

import gc
import importlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pyinfra.api.host import Host

from podinfra.check.catalogue import CHECKS, Check, CheckResult, Expectations, checks_for
from podinfra.check.report import NodeReport, not_run, timed_out
from podinfra.data import sshconfig
from podinfra.data.settings import fail

SUITE = Path(importlib.import_module("podinfra.suite").__file__ or "").parent
# What every node's run imports, loaded once here before the runs are forked. (Nothing here opens a
# gRPC channel before the fork.)
PRELOAD = (
    *("pytest", "testinfra.plugin", "testinfra.backend.ssh"),
    *("podinfra.suite.plugin", "podinfra.suite.test_checks", "podinfra.suite.test_upgrade"),
)


def ssh_config_text(hosts: Sequence[Host], control_dir: Path) -> str:
    """An ssh_config giving each node its inventory SSH data, so ``ssh -F FILE NAME`` is what pyinfra would do.

    Connections to a node share one master (ControlPath) for the run: a check runs a few dozen commands.
    The user's ~/.ssh/config is included last, for what the inventory does not say (ProxyJump, ...).
    """
    blocks = []
    for host in hosts:
        if host.data.get("ssh_password"):
            raise fail(host, "ssh_password", "podinfra check logs in with keys only: give ssh_key")
        blocks.append(
            sshconfig.block(
                host.name,
                hostname=host.data.get("ssh_hostname") or host.name,
                user=host.data.get("ssh_user"),
                port=host.data.get("ssh_port"),
                identity=host.data.get("ssh_key"),
                known_hosts=host.data.get("ssh_known_hosts_file"),
                strict=host.data.get("ssh_strict_host_key_checking"),
                batch=True,
                extra=("LogLevel ERROR", f"ControlPath {control_dir}/%C", "ConnectTimeout 10"),
            )
        )
    user_config = Path.home() / ".ssh" / "config"
    if user_config.is_file():
        blocks.append(f"Host *\n  Include {user_config}\n")
    return "\n".join(blocks)


def suite_args(node: str, ssh_config: Path, results: Path) -> list[str]:
    """pytest's arguments for one node's run of the suite."""
    # --confcutdir: no conftest of the directories above the suite. --assert=plain: each check words its own
    # failure (record.actual), so no assertion rewriting at start-up.
    args = [str(SUITE), "-p", "testinfra.plugin", "-p", "podinfra.suite.plugin", "-p", "no:cacheprovider"]
    args += ["-q", "--tb=short", "--assert=plain"]
    args += [f"--confcutdir={SUITE}", "--rootdir", str(SUITE), f"--hosts=ssh://{node}", f"--ssh-config={ssh_config}"]
    return args + [f"--podinfra-results={results}"]


def run_suite(args: list[str], log: Path, expected: Any) -> None:
    """A node's run, in a process forked from podinfra check: its own session (a terminal's Ctrl-C reaches
    only podinfra check, which stops each run with SIGTERM so that it removes its probe sandbox first),
    output to `log`, and only the plugins the suite needs (others installed next to podinfra cost start-up)."""
    os.setsid()
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import pytest

    sys.exit(int(pytest.main(args, plugins=[expected])))


def read_results(path: Path, node: str, duration: float, checks: Sequence[Check] = CHECKS) -> NodeReport | None:
    """The suite's results file for `node`, checks in catalogue order; a check the run did not report
    (deselected, crashed) counts as failed."""
    try:
        raw = json.loads(path.read_text())
        entries = {r["id"]: CheckResult(**r) for r in raw["nodes"][node]}
        notes = list(raw.get("notes", {}).get(node, []))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    results = [entries.get(c.id) or c.result("fail", actual="not reported by the run", remediation="") for c in checks]
    return NodeReport(node, results, duration, notes)


@dataclass
class _Run:
    node: str
    process: BaseProcess
    results: Path
    log: Path
    started: float
    checks: Sequence[Check]

    def running(self) -> bool:
        return self.process.exitcode is None

    def report(self) -> NodeReport:
        elapsed = time.monotonic() - self.started
        found = read_results(self.results, self.node, elapsed, self.checks)
        if found is None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            found = not_run(self.node, "the check run reported nothing: " + " | ".join(tail), elapsed, self.checks)
        return found


def _stop(runs: Iterable[_Run], grace: float) -> None:
    """SIGTERM each node's run (the suite turns it into KeyboardInterrupt and removes its probes), then SIGKILL."""
    live = [r for r in runs if r.running()]
    for run in live:
        run.process.terminate()
    deadline = time.monotonic() + grace
    for run in live:
        run.process.join(max(0.1, deadline - time.monotonic()))
        if run.running() and run.process.pid:
            with suppress(ProcessLookupError):  # not yet in its own session: then SIGKILL it alone
                os.killpg(run.process.pid, signal.SIGKILL)
            run.process.kill()
            run.process.join()


def run_nodes(
    hosts: Sequence[Host],
    expected: Mapping[str, Expectations],
    timeout: float,
    parallel: int,
    done: Callable[[NodeReport], None] = lambda report: None,
) -> list[NodeReport]:
    """One run of the suite per node, `parallel` at a time, each given the node's `expected`; each
    node's report, in inventory order. `done` is told of each node's report as its run ends."""
    from podinfra.suite.node import Expected

    for module in PRELOAD:
        importlib.import_module(module)
    # What is loaded now is never garbage: frozen, the runs' collections skip it (and leave its pages shared).
    gc.freeze()
    forking = multiprocessing.get_context("fork")
    plugin = Expected(dict(expected))
    workdir = Path(tempfile.mkdtemp(prefix="podinfra-check-"))
    reports: dict[str, NodeReport] = {}
    runs: list[_Run] = []
    previous: dict[int, Any] = {}
    try:
        workdir.chmod(0o700)
        ssh_config = workdir / "ssh_config"
        ssh_config.write_text(ssh_config_text(hosts, workdir))
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, signal.default_int_handler)
        waiting = [h.name for h in hosts]
        while waiting or runs:
            while waiting and len(runs) < parallel:
                node = waiting.pop(0)
                results, log = workdir / f"{node}.json", workdir / f"{node}.log"
                log.touch(0o600)  # here, so that a run killed before it writes a word still has a (empty) log
                args = suite_args(node, ssh_config, results)
                process = forking.Process(target=run_suite, args=(args, log, plugin), name=f"check {node}")
                process.start()
                runs.append(_Run(node, process, results, log, time.monotonic(), checks_for(expected.get(node))))
            time.sleep(0.05)
            for run in list(runs):
                elapsed = time.monotonic() - run.started
                if run.running() and elapsed > timeout:
                    _stop([run], grace=10)
                    reports[run.node] = timed_out(run.node, timeout, elapsed, run.checks)
                elif not run.running():
                    reports[run.node] = run.report()
                else:
                    continue
                runs.remove(run)
                done(reports[run.node])
    except BaseException:  # Ctrl-C, SIGTERM, or our own failure: every node's run stops and removes its probes
        _stop(runs, grace=20)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for host in hosts:  # close the shared SSH masters now rather than when they time out
            subprocess.run(
                ["ssh", "-F", str(workdir / "ssh_config"), "-O", "exit", host.name], capture_output=True, check=False
            )
        shutil.rmtree(workdir, ignore_errors=True)
    return [reports[h.name] for h in hosts]
