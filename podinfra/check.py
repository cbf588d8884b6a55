"""`podinfra check INVENTORY`: prove, node by node, that pods start from the right pause image.

    podinfra check inventories/lab.py --json report.json --junit report.xml

Runs the pytest-testinfra suite in ``tests/node`` once per node of the inventory's ``nodes`` group,
all nodes at once (one pytest process each), over SSH with the inventory's SSH data. Prints a
table of nodes by checks (pass / fail / skip), then each failure with its remediation; exits 1
when any node fails, 2 when the inventory data is wrong. ``--json`` writes a kube-bench-like
report, ``--junit`` a JUnit XML file with one test suite per node.

The catalogue of checks (:data:`CHECKS`) and the expectations read from inventory data
(:func:`expectations`) live here, so the suite and the command agree on them.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from pyinfra.api.exceptions import DeployError
from pyinfra.api.host import Host

from podinfra import table
from podinfra.hostdata import NodeSettings, fail, node_settings
from podinfra.reference import ReferenceError, cri_name, parse, split_registry
from podinfra.registry import RegistryError

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "node"
PROBE_NAMESPACE = "podinfra-check"
# Every probe sandbox carries this label and namespace; leftovers are found by both, never by one alone.
PROBE_LABELS = {"app.kubernetes.io/managed-by": "podinfra-check"}
DEFAULT_PROBE_IMAGE = "registry.k8s.io/podinfra/probe:1"
STATUSES = ("pass", "fail", "skip")


@dataclass(frozen=True)
class Check:
    """One named check: what it proves and what to do when it fails."""

    id: str
    name: str
    description: str
    remediation: str


CHECKS = (
    Check(
        "1",
        "runtime",
        "The container runtime answers on its CRI socket (name and version)",
        "Start the runtime (systemctl start containerd, or crio) and look at its log (journalctl -u containerd); "
        "the socket must be /run/containerd/containerd.sock (containerd) or /var/run/crio/crio.sock (CRI-O), "
        "or set the node's cri_socket data.",
    ),
    Check(
        "2",
        "config",
        "The runtime's effective config names the expected sandbox image, at the key paths of its version",
        "Run deploys/node.py for this node: it sets the sandbox image at the key path of the runtime's config "
        "version, removes keys the runtime ignores, and restarts the runtime. An `imports` drop-in that overrides "
        "the sandbox image must go.",
    ),
    Check(
        "3",
        "mirror",
        "hosts.toml sends pulls of the mirrored registries to the local registry only, CA present",
        "Run deploys/node.py for this node: it writes certs.d/REGISTRY/hosts.toml with `server` = the local "
        "registry (so nothing falls back to the public registry), the registry CA, and containerd's config_path.",
    ),
    Check(
        "4",
        "kubelet",
        "kubelet --pod-infra-container-image is the sandbox image below Kubernetes 1.35 and absent from 1.35",
        "Run deploys/node.py for this node (it edits the kubelet flags file), then restart the kubelet.",
    ),
    Check(
        "5",
        "pause",
        "The pause image is in the runtime's image store with the expected digest, and pinned",
        "Run deploys/node.py for this node: it pulls the pause image from the local registry and pins it. "
        "A wrong digest means the local registry holds another image under that tag: mirror it again.",
    ),
    Check(
        "6",
        "registry",
        "The node resolves the pause manifest at its mirror, and cannot reach the upstream when air-gapped",
        "Mirror the pause image into the registry the node's hosts.toml names (deploys/mirror.py or "
        "`podinfra mirror`), or point hosts.toml at the registry that holds it (deploys/node.py).",
    ),
    Check(
        "7",
        "sandbox",
        "A probe sandbox becomes Ready from the expected pause image (by digest), gets a pod IP, and is removed",
        "Read the runtime's log for the probe sandbox (journalctl -u containerd); CNI errors mean the node's "
        "network plugin config is missing (/etc/cni/net.d).",
    ),
    Check(
        "8",
        "namespaces",
        "Pause holds the pod: PID 1 reaping orphans, the pod IP in the app container and kept across its restart, "
        "stopping the sandbox stops its containers",
        "Use the upstream pause image (or one built from its source): the sandbox image must reap children and "
        "hold the network namespace. Mirror the probe image (check_probe_image) into the local registry.",
    ),
)
_BY_ID = {check.id: check for check in CHECKS}


def catalogue(check_id: str) -> Check:
    """The check with this id: ``catalogue("2").name == "config"``."""
    return _BY_ID[check_id]


# --- inventory ---------------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A ``--data`` value as ``pyinfra --data`` reads it: true/false, a whole number, JSON, else the text.

    (pyinfra_cli's own parser cannot be imported: importing pyinfra_cli monkey-patches the process with gevent.)

    >>> [parse_value(v) for v in ("false", "3", '["a"]', "10.0.0.1:5000")]
    [False, 3, ['a'], '10.0.0.1:5000']
    """
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_data(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` overrides: ``parse_data(["airgap_probe=10.0.0.1:5000"]) == {"airgap_probe": "10.0.0.1:5000"}``."""
    data = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--data {item!r}: write KEY=VALUE")
        data[key] = parse_value(value)
    return data


def _is_group(name: str, value: Any) -> bool:
    # pyinfra's rule: a public module-level list of hosts (names or (name, data)), or a (hosts, data) tuple.
    if name.startswith("_"):
        return False
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value = value[0]
    return isinstance(value, list) and all(isinstance(item, str | tuple) for item in value)


def _group_data(folder: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for file in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        attrs = runpy.run_path(str(file))
        found[file.stem] = {
            k: v for k, v in attrs.items() if not k.startswith("_") and not isinstance(v, ModuleType | type)
        }
    return found


def load_inventory(path: str, data: Iterable[str] = ()) -> Any:
    """A pyinfra Inventory (``pyinfra.api``) of an inventory file, with ``--data`` overrides.

    The file is run with runpy and its groups read as pyinfra's CLI reads them: module-level lists of
    hosts or ``(name, data)`` tuples, ``(hosts, data)`` group tuples, ``group_data/GROUP.py`` next to
    the file or in the working directory, a group named after the file. Host objects are pyinfra's,
    so ``podinfra.hostdata`` reads them as the deploys do.

    >>> load_inventory("inventories/lab.py").get_group("nodes")  # doctest: +SKIP
    [Host(node1), Host(node2)]
    """
    from pyinfra.api.inventory import Inventory

    file = Path(path)
    if not file.is_file():
        raise argparse.ArgumentTypeError(f"inventory {path}: no such file")
    groups: dict[str, tuple[list[Any], dict[str, Any]]] = {}
    for name, value in runpy.run_path(str(file)).items():
        if _is_group(name, value):
            hosts, group_data = value if isinstance(value, tuple) else (value, {})
            groups[name] = (list(hosts), dict(group_data))
    names = list(dict.fromkeys(h[0] if isinstance(h, tuple) else h for hosts, _ in groups.values() for h in hosts))
    all_hosts, all_data = groups.pop("all", (names, {}))
    groups.setdefault(file.stem, (names, {}))
    for folder in dict.fromkeys((Path.cwd() / "group_data", file.resolve().parent / "group_data")):
        for group, extra in _group_data(folder).items():
            if group == "all":
                all_data = {**all_data, **extra}
            else:
                hosts, known = groups.get(group, ([], {}))
                groups[group] = (hosts, {**known, **extra})
    return Inventory((all_hosts, all_data), override_data=parse_data(data), **groups)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Expectations:
    """What a node must show, from its inventory data (``node_settings``) and the local registry.

    ``sandbox_image``: what the runtime config names; ``store_name``: the name its image store files it
    under (a digest drops the tag); ``digest``: the pause index digest, from host data ``pause_digest``
    or, when unset, asked of the local registry from here.
    """

    settings: NodeSettings
    sandbox_image: str
    store_name: str
    mirror_for: str
    repository: str
    digest: str | None
    digest_source: str
    airgap_probe: str | None
    probe_image: str | None
    probe_timeout: float
    cri_socket: str | None


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
class CheckResult:
    """One check on one node, as the suite records it."""

    id: str
    name: str
    description: str
    status: str  # pass, fail or skip
    expected: str = ""
    actual: str = ""
    remediation: str = ""
    duration: float = 0.0


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


@dataclass
class _Run:
    node: str
    process: subprocess.Popen[bytes]
    results: Path
    log: Path
    started: float


def _pytest_command(node: str, inventory: str, ssh_config: Path, data: Sequence[str], results: Path) -> list[str]:
    command = [sys.executable, "-m", "pytest", str(SUITE), "-p", "no:cacheprovider", "-q", "--tb=short"]
    command += ["--rootdir", str(ROOT), f"--hosts=ssh://{node}", f"--ssh-config={ssh_config}"]
    command += [f"--podinfra-inventory={inventory}", f"--podinfra-results={results}"]
    for item in data:
        command.append(f"--podinfra-data={item}")
    return command


def _stop(runs: Iterable[_Run], grace: float) -> None:
    """SIGTERM each node's run (the suite turns it into KeyboardInterrupt and removes its probes), then SIGKILL."""
    live = [r for r in runs if r.process.poll() is None]
    for run in live:
        run.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for run in live:
        try:
            run.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()


def run_nodes(
    inventory: str, hosts: Sequence[Host], data: Sequence[str], timeout: float, parallel: int, echo: bool
) -> list[NodeReport]:
    """One pytest process per node, `parallel` at a time; each node's report, in inventory order."""
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
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, interrupted)
        waiting = [h.name for h in hosts]
        while waiting or runs:
            while waiting and len(runs) < parallel:
                node = waiting.pop(0)
                results, log = workdir / f"{node}.json", workdir / f"{node}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        _pytest_command(node, inventory, ssh_config, data, results),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        cwd=os.getcwd(),
                        # Its own session: a terminal's Ctrl-C reaches only us, and we stop each run
                        # with SIGTERM so that it removes its probe sandbox first.
                        start_new_session=True,
                    )
                runs.append(_Run(node, process, results, log, time.monotonic()))
            time.sleep(0.05)
            for run in list(runs):
                elapsed = time.monotonic() - run.started
                if run.process.poll() is None and elapsed > timeout:
                    _stop([run], grace=10)
                    reports[run.node] = not_run(run.node, f"timed out after {timeout:.0f}s", elapsed)
                elif run.process.poll() is not None:
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
    except KeyboardInterrupt:
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
        for host in hosts:  # all data checked before any node is touched
            expectations(host, ask_registry=False)
    except DeployError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    try:
        reports = run_nodes(inventory_path, hosts, args.data, args.timeout, max(1, args.parallel), echo=True)
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
