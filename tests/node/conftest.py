"""Fixtures and result recording for the node compliance suite (see README.md here).

    pytest tests/node --hosts=ssh://node1 --ssh-config=/var/lib/podinfra/lab/ssh/config \\
        --podinfra-inventory=inventories/lab.py [--podinfra-data KEY=VALUE ...] [--podinfra-results FILE]

`podinfra check` gives ``--podinfra-expectations FILE`` instead of the inventory: what each node must
show, read from the inventory once for all nodes, so that a node's run imports neither pyinfra nor
requests (their import is most of a run's CPU time).

Without ``--hosts`` every test here is skipped, so a plain ``pytest`` of the repository never
checks the machine it runs on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import pytest

from podinfra import checks
from podinfra.cri import CONTAINERD_SOCKET, CRIO_SOCKET, CRIError, Runtime, forwarded_socket
from podinfra.runtime_config import ConfigError, containerd_version_from_output, crio_version_from_output

from . import probes

RESULTS = pytest.StashKey[dict[str, dict[str, checks.CheckResult]]]()
RECORD = pytest.StashKey[checks.CheckResult]()
HERE = Path(__file__).resolve().parent
SETUP_REMEDIATION = (
    "The check could not run on this node: fix what `actual` says (SSH access from the inventory's ssh_* data, "
    "the node's inventory data, or the runtime's installation), then check again."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("podinfra", "podinfra node checks")
    group.addoption("--podinfra-inventory", help="pyinfra inventory file with the nodes' data")
    group.addoption(
        "--podinfra-data", action="append", default=[], metavar="KEY=VALUE", help="override host data, as pyinfra"
    )
    group.addoption("--podinfra-node", help="the node's inventory name, when --hosts names it otherwise (one host)")
    group.addoption(
        "--podinfra-expectations", metavar="FILE", help="what each node must show, as podinfra check writes it"
    )
    group.addoption("--podinfra-results", metavar="FILE", help="write the results as JSON (podinfra check reads it)")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS] = {}
    config.addinivalue_line("markers", "check(id): the podinfra check this test implements")
    if config.getoption("podinfra_inventory") or config.getoption("podinfra_expectations"):
        # podinfra check stops a run with SIGTERM: as KeyboardInterrupt it unwinds the probes' finally blocks.
        signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("hosts"):
        return
    skip = pytest.mark.skip(reason="node checks need --hosts and --podinfra-inventory (tests/node/README.md)")
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(skip)


# --- the node ----------------------------------------------------------------------------------------------


@dataclass
class Node:
    """The node under check: its testinfra host, what it must show, and how to reach it beyond host.run."""

    name: str
    host: Any  # testinfra.host.Host
    expect: checks.Expectations
    runtime: str  # "containerd" or "cri-o"
    version: str
    ssh_config: Path | None  # None: the local machine
    alias: str

    answers: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)

    def run(self, command: str, *args: str) -> Any:
        return self.host.run(command, *args)

    def once(self, command: str, *args: str) -> Any:
        """`run` for what does not change during a check run (config dump, files): asked of the node once."""
        key = (command, *args)
        if key in self.answers:
            return self.answers[key]
        result = self.host.run(command, *args)
        if result.rc != 255:  # 255: ssh itself failed; ask again next time rather than repeat that
            self.answers[key] = result
        return result

    def run_input(self, command: str, data: bytes, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
        """`command` on the node with `data` on its stdin, which testinfra cannot give (secrets go this way)."""
        argv = ["sh", "-c", command] if self.ssh_config is None else ["ssh", "-F", str(self.ssh_config), self.alias]
        if self.ssh_config is not None:
            argv.append(command)
        return subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False)


def _expectations(config: pytest.Config, name: str) -> checks.Expectations:
    """What node `name` must show: from the --podinfra-expectations file, else from the inventory."""
    path = config.getoption("podinfra_expectations")
    if path:
        by_node = json.loads(Path(path).read_text())
        if name not in by_node:
            raise RuntimeError(f"{name} is not in {path}: name it as the inventory does, or --podinfra-node")
        return checks.Expectations.from_json(by_node[name])
    inventory_file = config.getoption("podinfra_inventory")
    if not inventory_file:
        raise pytest.UsageError("give --podinfra-inventory=FILE: the nodes' data (kubernetes_version, registry...)")
    from podinfra.check import expectations
    from podinfra.inventory import load_inventory

    pyinfra_host = load_inventory(inventory_file, config.getoption("podinfra_data")).get_host(name, None)
    if pyinfra_host is None:
        raise RuntimeError(f"{name} is not in the inventory: name it as the inventory does, or --podinfra-node")
    return expectations(pyinfra_host)


def _ssh_config(backend: Any, workdir: Path) -> tuple[Path | None, str]:
    """An ssh_config (and host alias) reaching the testinfra host; None for the local backend."""
    if backend.NAME == "local":
        return None, "localhost"
    if backend.NAME not in ("ssh", "safe-ssh", "paramiko"):
        raise RuntimeError(f"the {backend.NAME} connection is not supported: use ssh:// (or local://)")
    if getattr(backend, "ssh_config", None):
        return Path(backend.ssh_config), backend.host.name
    lines = [f"Host {backend.host.name}", "  BatchMode yes"]
    if backend.host.user:
        lines.append(f"  User {backend.host.user}")
    if backend.host.port:
        lines.append(f"  Port {backend.host.port}")
    if getattr(backend, "ssh_identity_file", None):
        lines.append(f"  IdentityFile {backend.ssh_identity_file}")
    path = workdir / "ssh_config"
    path.write_text("\n".join(lines) + "\n")
    return path, backend.host.name


def _reachable(host: Any, name: str) -> None:
    try:
        host.run("true")
    except RuntimeError as e:  # testinfra's ssh backend raises with the CommandResult when ssh itself fails
        result = e.args[0] if e.args else None
        detail = getattr(result, "stderr", "") or str(e)
        raise RuntimeError(f"cannot run commands on {name} over SSH: {detail.strip()[:300]}") from None


def _detect_runtime(host: Any) -> tuple[str, str]:
    containerd = host.run("containerd --version")
    if containerd.rc == 0:
        try:
            return "containerd", containerd_version_from_output(containerd.stdout)
        except ConfigError as e:
            raise RuntimeError(str(e)) from None
    crio = host.run("crio --version")
    version = crio_version_from_output(crio.stdout) if crio.rc == 0 else None
    if version:
        return "cri-o", version
    raise RuntimeError("neither containerd nor CRI-O is installed (containerd --version, crio --version failed)")


def node_name(config: pytest.Config, host: Any) -> str:
    return str(config.getoption("podinfra_node") or host.backend.get_hostname())


@pytest.fixture(scope="module")
def node(host: Any, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Node:
    name = node_name(request.config, host)
    expect = _expectations(request.config, name)
    ssh_config, alias = _ssh_config(host.backend, tmp_path_factory.mktemp("ssh"))
    _reachable(host, name)
    runtime, version = _detect_runtime(host)
    return Node(name, host, expect, runtime, version, ssh_config, alias)


@dataclass
class CRI:
    """The node's CRI endpoint, or why it cannot be reached."""

    runtime: Runtime | None
    socket: str
    answer: tuple[str, str] = ("", "")
    error: str = ""
    removed_leftovers: int = 0

    def get(self) -> Runtime:
        if self.runtime is None:
            pytest.fail(f"no CRI: {self.error}")
        return self.runtime


@pytest.fixture(scope="module")
def cri(node: Node) -> Iterator[CRI]:
    """The CRI over an SSH-forwarded socket; leftovers of interrupted probes are removed on connect."""
    socket = node.expect.cri_socket or (CONTAINERD_SOCKET if node.runtime == "containerd" else CRIO_SOCKET)
    with ExitStack() as stack:
        try:
            if node.ssh_config is None:
                target = f"unix://{socket}"
            else:
                target = stack.enter_context(forwarded_socket(node.ssh_config, node.alias, socket))
            runtime = Runtime(target, timeout=node.expect.probe_timeout)
            stack.callback(runtime.close)
            answer = runtime.version()
            removed = probes.remove_leftovers(runtime)
        except (CRIError, grpc.RpcError) as e:
            detail = e.details() if isinstance(e, grpc.RpcError) else str(e)  # type: ignore[attr-defined]
            yield CRI(None, socket, error=f"{socket}: {detail}")
            return
        yield CRI(runtime, socket, answer, removed_leftovers=len(removed))


# --- recording results -------------------------------------------------------------------------------------


def _check_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("check")
    return str(marker.args[0]) if marker else None


def _item_node(item: pytest.Item) -> str:
    params = getattr(item, "callspec", None)
    host = params.params.get("_testinfra_host") if params else None
    return node_name(item.config, host) if host is not None else "local"


@pytest.fixture
def record(request: pytest.FixtureRequest) -> checks.CheckResult:
    """The result this test fills in: ``record.expected``, ``record.actual`` (and a specific ``remediation``)."""
    check_id = _check_id(request.node)
    assert check_id, "mark the test with @pytest.mark.check(ID)"
    entry = checks.catalogue(check_id)
    result = checks.CheckResult(entry.id, entry.name, entry.description, "pass", remediation=entry.remediation)
    request.node.stash[RECORD] = result
    return result


def results_so_far(config: pytest.Config, node: str) -> dict[str, checks.CheckResult]:
    return config.stash[RESULTS].get(node, {})


def require(config: pytest.Config, node: str, record: checks.CheckResult, ids: tuple[str, ...]) -> None:
    """Skip a probe when a check it depends on failed: a probe on a drifted node could pull from
    elsewhere or re-pull the pause image and hide the drift."""
    done = results_so_far(config, node)
    failed = [i for i in ids if i in done and done[i].status != "pass"]
    if failed:
        record.actual = f"not run: check {', '.join(failed)} did not pass"
        pytest.skip(record.actual)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    check_id = _check_id(item)
    if check_id is None:
        return report
    node = _item_node(item)
    entry = checks.catalogue(check_id)
    results = item.config.stash[RESULTS].setdefault(node, {})
    result = results.get(check_id) or item.stash.get(RECORD, None)
    if result is None:
        result = checks.CheckResult(entry.id, entry.name, entry.description, "pass", remediation=entry.remediation)
    result.duration += report.duration
    if report.skipped:
        result.status = "skip"
        if not result.actual and call.excinfo is not None:
            result.actual = str(getattr(call.excinfo.value, "msg", call.excinfo.value))
    elif report.failed:
        result.status = "fail"
        if call.excinfo is not None:
            recorded = call.excinfo.errisinstance(AssertionError) and result.actual and report.when == "call"
            if not recorded:  # an error, not a finding: say what it was
                message = call.excinfo.exconly().strip().splitlines()
                detail = message[0] if message else "error"
                for prefix in ("Failed: ", "RuntimeError: ", "AssertionError: "):
                    detail = detail.removeprefix(prefix)
                result.actual = (f"{result.actual}; " if result.actual else "") + detail[:1000]
        if report.when == "setup":
            result.remediation = SETUP_REMEDIATION
    elif report.when == "call" and result.status != "fail":
        result.status = "pass"
    results[check_id] = result
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("podinfra_results")
    if not path:
        return
    nodes = {
        node: [asdict(r) for _, r in sorted(entries.items(), key=lambda kv: int(kv[0]))]
        for node, entries in session.config.stash[RESULTS].items()
    }
    tmp = Path(tempfile.mkstemp(dir=Path(path).resolve().parent, suffix=".tmp")[1])
    tmp.write_text(json.dumps({"written": time.time(), "nodes": nodes}, indent=2))
    tmp.rename(path)
