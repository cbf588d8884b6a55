"""`podinfra check INVENTORY`: prove, node by node, that pods start from the right pause image.

    podinfra check inventories/lab.py --json report.json --junit report.xml

Runs the pytest-testinfra suite in ``tests/node`` once per node of the inventory's ``nodes`` group,
all nodes at once (one process each, forked from this one), over SSH with the inventory's SSH data. Prints a
table of nodes by checks (pass / fail / skip), then each failure with its remediation; exits 1
when any node fails, 2 when the inventory data is wrong. ``--json`` writes a kube-bench-like
report, ``--junit`` a JUnit XML file with one test suite per node.

What each node must show is read here from the inventory (:func:`expectations`), once, and handed
to the node's run as JSON; the catalogue of checks is in :mod:`podinfra.checks`.
"""

from __future__ import annotations

import argparse
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
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from pyinfra.api.exceptions import DeployError
from pyinfra.api.host import Host

from podinfra import table
from podinfra.checks import CHECKS, DEFAULT_PROBE_IMAGE, STATUSES, CheckResult, Expectations
from podinfra.hostdata import fail, node_settings
from podinfra.inventory import load_inventory
from podinfra.reference import ReferenceError, cri_name, parse, split_registry
from podinfra.registry import RegistryError
from podinfra.settings import NodeSettings

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "node"


# --- expectations ------------------------------------------------------------------------------------------


def _registry_digest(settings: NodeSettings) -> tuple[str | None, str]:
    # HTTPS as deploys/node.py writes it in hosts.toml; without registry_ca, against the system's CAs.
    try:
        digest = settings.pause_digest()
    except RegistryError as e:
        return None, f"unknown: {e}"
    return digest, f"local registry {settings.registry}"


def expectations(host: Host, ask_registry: bool = True) -> Expectations:
    """Read and check a node's data; raises pyinfra's DeployError naming the key and the fix.

    More host data than ``node_settings`` reads: ``pause_digest`` (expected pause digest; default:
    the local registry's), ``airgap_probe`` ("HOST:PORT" the node must not reach; absent: not
    checked), ``check_probe_image`` (static image with /bin/busybox for check 8, default
    ``registry.k8s.io/podinfra/probe:1``; false skips check 8), ``check_probe_timeout`` (30 s for a
    probe sandbox to become Ready), ``cri_socket`` (default: the runtime's usual socket).
    """
    settings = node_settings(host)
    repository = settings.pause_repository
    digest: Any = host.data.get("pause_digest")
    if digest is not None and (not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71):
        raise fail(host, "pause_digest", "use the image's digest, sha256: and 64 hex digits", digest)
    source = "host data pause_digest"
    if digest is None:
        digest, source = _registry_digest(settings) if ask_registry else (None, "not asked")
    sandbox = settings.sandbox_image(digest)
    store = cri_name(sandbox)
    mirror_for = "registry.k8s.io" if settings.mode == "canonical" else settings.registry
    probe: Any = host.data.get("airgap_probe")
    if probe is not None:
        try:
            host_part, _ = split_registry(probe) if isinstance(probe, str) else ("", "")
        except ReferenceError:
            host_part = ""
        if not isinstance(probe, str) or host_part != probe or ":" not in probe:
            raise fail(host, "airgap_probe", "give the upstream HOST:PORT as the node would reach it", probe)
    image: Any = host.data.get("check_probe_image", DEFAULT_PROBE_IMAGE)
    if image is False:
        image = None
    elif not isinstance(image, str):
        raise fail(host, "check_probe_image", "give an image reference, or false to skip check 8", image)
    else:
        try:
            parse(image)
        except ReferenceError as e:
            raise fail(host, "check_probe_image", str(e)) from None
    timeout: Any = host.data.get("check_probe_timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise fail(host, "check_probe_timeout", "use seconds, more than 0", timeout)
    socket: Any = host.data.get("cri_socket")
    if socket is not None and (not isinstance(socket, str) or not socket.startswith("/")):
        raise fail(host, "cri_socket", "use the absolute path of the runtime's socket on the node", socket)
    return Expectations(
        settings, sandbox, store, mirror_for, repository, digest, source, probe, image, float(timeout), socket
    )


# --- results -----------------------------------------------------------------------------------------------


@dataclass
class NodeReport:
    node: str
    results: list[CheckResult] = field(default_factory=list)
    duration: float = 0.0

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.results)


def not_run(node: str, reason: str, duration: float = 0.0) -> NodeReport:
    """Every check failed for a node whose run reported nothing (SSH down, suite crashed, timed out)."""
    fix = "The checks did not run to the end on this node: fix what `actual` says, then check again."
    results = [CheckResult(c.id, c.name, c.description, "fail", actual=reason, remediation=fix) for c in CHECKS]
    return NodeReport(node, results, duration)


def read_results(path: Path, node: str, duration: float) -> NodeReport | None:
    """The suite's results file (``--podinfra-results``) for `node`, checks in catalogue order; a check
    the run did not report (deselected, crashed) counts as failed."""
    try:
        raw = json.loads(path.read_text())
        entries = {r["id"]: CheckResult(**r) for r in raw["nodes"][node]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    results = []
    for check in CHECKS:
        results.append(
            entries.get(check.id)
            or CheckResult(check.id, check.name, check.description, "fail", actual="not reported by the run")
        )
    return NodeReport(node, results, duration)


def totals(reports: Sequence[NodeReport]) -> dict[str, int]:
    counts = {f"total_{s}": sum(r.status == s for n in reports for r in n.results) for s in STATUSES}
    counts["nodes_failed"] = sum(n.failed for n in reports)
    counts["nodes_passed"] = len(reports) - counts["nodes_failed"]
    return counts


def render(reports: Sequence[NodeReport]) -> str:
    """The terminal report: nodes by checks, then each failure with its remediation."""
    headers = ("NODE", *(f"{c.id} {c.name}" for c in CHECKS))
    rows = [(n.node, *(r.status for r in n.results)) for n in reports]
    lines = [table.render(headers, rows)]
    for report in reports:
        failed = [r for r in report.results if r.status == "fail"]
        if len(failed) > 1 and len({(r.actual, r.remediation) for r in failed}) == 1:
            # One cause for every check (node unreachable, bad data): say it once.
            ids = ",".join(r.id for r in failed)
            lines += ["", f"FAIL {report.node} checks {ids}", f"  actual:      {failed[0].actual or '-'}"]
            lines.append(f"  remediation: {failed[0].remediation}")
            continue
        for r in failed:
            lines += [
                "",
                f"FAIL {report.node} {r.id} {r.name}: {r.description}",
                f"  expected:    {r.expected or '-'}",
                f"  actual:      {r.actual or '-'}",
                f"  remediation: {r.remediation}",
            ]
    t = totals(reports)
    lines += [
        "",
        f"{len(reports)} nodes: {t['nodes_passed']} passed, {t['nodes_failed']} failed "
        f"({t['total_pass']} checks passed, {t['total_fail']} failed, {t['total_skip']} skipped)",
    ]
    return "\n".join(lines)


def to_json(reports: Sequence[NodeReport], inventory: str, started: float, duration: float) -> dict[str, Any]:
    """kube-bench's shape, per node instead of per control: statuses PASS/FAIL/SKIP, totals at both levels."""
    return {
        "tool": "podinfra check",
        "inventory": inventory,
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_s": round(duration, 2),
        "nodes": [
            {
                "node": n.node,
                "status": "FAIL" if n.failed else "PASS",
                "duration_s": round(n.duration, 2),
                "checks": [
                    {**asdict(r), "status": r.status.upper(), "duration": round(r.duration, 3)} for r in n.results
                ],
                "totals": {k: v for k, v in totals([n]).items() if k.startswith("total_")},
            }
            for n in reports
        ],
        "totals": totals(reports),
    }


def to_junit(reports: Sequence[NodeReport]) -> str:
    """JUnit XML: a test suite per node, a test case per check; failures carry expected, actual and the fix."""
    suites = ET.Element("testsuites", name="podinfra check")
    for n in reports:
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=n.node,
            tests=str(len(n.results)),
            failures=str(sum(r.status == "fail" for r in n.results)),
            skipped=str(sum(r.status == "skip" for r in n.results)),
            errors="0",
            time=f"{n.duration:.3f}",
        )
        for r in n.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"podinfra.check.{n.node}",
                name=f"{r.id} {r.name}",
                time=f"{r.duration:.3f}",
            )
            if r.status == "fail":
                failure = ET.SubElement(case, "failure", message=r.actual[:500])
                failure.text = (
                    f"{r.description}\nexpected: {r.expected}\nactual: {r.actual}\nremediation: {r.remediation}"
                )
            elif r.status == "skip":
                ET.SubElement(case, "skipped", message=r.actual[:500])
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# --- running the suite -------------------------------------------------------------------------------------


def ssh_config_text(hosts: Sequence[Host], control_dir: Path) -> str:
    """An ssh_config giving each node its inventory SSH data, so ``ssh -F FILE NAME`` is what pyinfra would do.

    Connections to a node share one master (ControlPath) for the run: a check runs a few dozen commands.
    The user's ~/.ssh/config is included last, for what the inventory does not say (ProxyJump, ...).
    """
    blocks = []
    for host in hosts:
        if host.data.get("ssh_password"):
            raise fail(host, "ssh_password", "podinfra check logs in with keys only: give ssh_key")
        lines = [f"Host {host.name}", f"  HostName {host.data.get('ssh_hostname') or host.name}"]
        for key, option in (("ssh_user", "User"), ("ssh_port", "Port"), ("ssh_known_hosts_file", "UserKnownHostsFile")):
            if host.data.get(key) is not None:
                lines.append(f"  {option} {host.data.get(key)}")
        if host.data.get("ssh_key"):
            lines += [f"  IdentityFile {host.data.get('ssh_key')}", "  IdentitiesOnly yes"]
        strict = host.data.get("ssh_strict_host_key_checking")
        if strict is not None:
            lines.append(f"  StrictHostKeyChecking {strict}")
        lines += ["  BatchMode yes", "  LogLevel ERROR", f"  ControlPath {control_dir}/%C", "  ConnectTimeout 10"]
        blocks.append("\n".join(lines) + "\n")
    user_config = Path.home() / ".ssh" / "config"
    if user_config.is_file():
        blocks.append(f"Host *\n  Include {user_config}\n")
    return "\n".join(blocks)


# What every node's run imports, loaded once here before the runs are forked: most of a run's CPU time is
# these imports, paid once instead of once per node. (Nothing here opens a gRPC channel before the fork.)
PRELOAD = (
    *("pytest", "testinfra.plugin", "testinfra.backend.ssh"),
    *("podinfra.checks", "podinfra.cri", "podinfra.oci", "podinfra.runtime_config"),
)


@dataclass
class _Run:
    node: str
    process: BaseProcess
    results: Path
    log: Path
    started: float

    def running(self) -> bool:
        return self.process.exitcode is None


def suite_args(node: str, ssh_config: Path, expected: Path, results: Path) -> list[str]:
    """pytest's arguments for one node's run of the suite."""
    # --confcutdir: the suite's conftest only, not the repository's tests/conftest.py (it imports requests).
    # --assert=plain: each check words its own failure (record.actual), so no assertion rewriting at start-up.
    args = [str(SUITE), "-p", "testinfra.plugin", "-p", "no:cacheprovider", "-q", "--tb=short", "--assert=plain"]
    args += [f"--confcutdir={SUITE}", "--rootdir", str(ROOT), f"--hosts=ssh://{node}", f"--ssh-config={ssh_config}"]
    return args + [f"--podinfra-expectations={expected}", f"--podinfra-results={results}"]


def run_suite(args: list[str], log: Path) -> None:
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

    sys.exit(int(pytest.main(args)))


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
    hosts: Sequence[Host], expected: Mapping[str, Expectations], timeout: float, parallel: int, echo: bool
) -> list[NodeReport]:
    """One pytest process per node, `parallel` at a time, each given the node's `expected`; each
    node's report, in inventory order."""
    for module in PRELOAD:
        importlib.import_module(module)
    # What is loaded now is never garbage: frozen, the runs' collections skip it (and leave its pages shared).
    gc.freeze()
    forking = multiprocessing.get_context("fork")
    workdir = Path(tempfile.mkdtemp(prefix="podinfra-check-"))
    reports: dict[str, NodeReport] = {}
    runs: list[_Run] = []
    previous: dict[int, Any] = {}

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        workdir.chmod(0o700)
        ssh_config = workdir / "ssh_config"
        ssh_config.write_text(ssh_config_text(hosts, workdir))
        expected_file = workdir / "expectations.json"
        expected_file.write_text(json.dumps({name: e.to_json() for name, e in expected.items()}))
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, interrupted)
        waiting = [h.name for h in hosts]
        while waiting or runs:
            while waiting and len(runs) < parallel:
                node = waiting.pop(0)
                results, log = workdir / f"{node}.json", workdir / f"{node}.log"
                args = suite_args(node, ssh_config, expected_file, results)
                log.touch(0o600)  # here, so that a run killed before it writes a word still has a (empty) log
                process = forking.Process(target=run_suite, args=(args, log), name=f"check {node}")
                process.start()
                runs.append(_Run(node, process, results, log, time.monotonic()))
            time.sleep(0.05)
            for run in list(runs):
                elapsed = time.monotonic() - run.started
                if run.running() and elapsed > timeout:
                    _stop([run], grace=10)
                    reports[run.node] = not_run(run.node, f"timed out after {timeout:.0f}s", elapsed)
                elif not run.running():
                    report = read_results(run.results, run.node, elapsed)
                    if report is None:
                        tail = run.log.read_text(errors="replace").strip().splitlines()[-5:]
                        report = not_run(run.node, "the check run reported nothing: " + " | ".join(tail), elapsed)
                    reports[run.node] = report
                else:
                    continue
                runs.remove(run)
                if echo:
                    state = "FAIL" if reports[run.node].failed else "PASS"
                    print(f"[check] {run.node}: {state} in {elapsed:.1f}s", file=sys.stderr, flush=True)
    except BaseException:  # Ctrl-C, SIGTERM, or our own failure: every node's run stops and removes its probes
        _stop(runs, grace=20)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for host in hosts:  # close the shared SSH masters now rather than when they time out
            subprocess.run(
                ["ssh", "-F", str(workdir / "ssh_config"), "-O", "exit", host.name],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(workdir, ignore_errors=True)
    return [reports[h.name] for h in hosts]


def run(args: argparse.Namespace) -> int:
    """The `check` subcommand: 0 when every node passes, 1 when any fails, 2 for bad input."""
    started, clock = time.time(), time.monotonic()
    inventory_path = str(Path(args.inventory).resolve())
    if not (SUITE / "conftest.py").is_file():
        raise argparse.ArgumentTypeError(f"the node suite is missing ({SUITE}): run podinfra from its checkout")
    try:
        inventory = load_inventory(inventory_path, args.data)
        hosts = [h for h in inventory.get_group(args.group, []) if not args.limit or h.name in args.limit]
        if not hosts:
            raise argparse.ArgumentTypeError(f"no hosts in group {args.group!r} of {args.inventory}")
        for host in hosts:  # all data checked before a registry or a node is asked anything
            expectations(host, ask_registry=False)
        expected = {host.name: expectations(host) for host in hosts}
    except DeployError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    try:
        reports = run_nodes(hosts, expected, args.timeout, max(1, args.parallel), echo=True)
    except KeyboardInterrupt:
        print("podinfra check: interrupted; each node's run was stopped and removed its probe", file=sys.stderr)
        return 130
    duration = time.monotonic() - clock
    print(render(reports))
    print(f"checked in {duration:.1f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(reports, args.inventory, started, duration), indent=2) + "\n")
    if args.junit:
        Path(args.junit).write_text(to_junit(reports))
    return 1 if any(r.failed for r in reports) else 0
