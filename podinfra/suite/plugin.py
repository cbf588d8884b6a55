"""The node compliance suite's pytest plugin: options, fixtures, result recording (see README.md here).

    pytest -p podinfra.suite.plugin --pyargs podinfra.suite --hosts=ssh://10.213.0.11 \\
        --ssh-config=/var/lib/podinfra/lab/ssh/config --podinfra-inventory=inventories/lab.py \\
        [--podinfra-data KEY=VALUE ...] [--podinfra-results FILE]

A plugin (``-p``), as testinfra's own is, rather than a conftest.py: pytest loads a package's
conftest too late to know its options when the suite is named with ``--pyargs``.

`podinfra check` hands what each node must show in memory (:class:`Expected`, a plugin object)
instead of the inventory, so that a node's run, forked from it, reads nothing again.

Without ``--hosts`` every test here is skipped, so a plain ``pytest`` never checks the machine it runs on.
"""

from __future__ import annotations

import json
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from podinfra.check import catalogue
from podinfra.suite import internals, waits
from podinfra.suite.node import (
    CRI,
    NOTES,
    RESULTS,
    Expected,
    Node,
    connect,
    open_cri,
)

RECORD = pytest.StashKey[catalogue.CheckResult]()
HERE = Path(__file__).resolve().parent
SUITE_FILES = (HERE / "test_checks.py", HERE / "test_upgrade.py")
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
    group.addoption("--podinfra-results", metavar="FILE", help="write the results as JSON (podinfra check reads it)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS] = {}
    config.stash[NOTES] = {}
    config.addinivalue_line("markers", "check(id): the podinfra check this test implements")
    if config.getoption("hosts"):
        # podinfra check stops a run with SIGTERM: as KeyboardInterrupt it unwinds the probes' finally blocks.
        signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With --hosts the checks are the point, whatever the project around says (podinfra's own pyproject.toml
    ignores them, for its doctest run)."""
    return False if config.getoption("hosts") and collection_path in SUITE_FILES else None


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With pytest-xdist (`-n N --dist loadgroup`), a node's checks in one worker, in order: the probes look
    at what the checks before them found on that node, and a second worker connecting to it would take a
    probe in use for an interrupted run's leftover. Grouped by the host in each test id (`[ssh://node1]`):
    xdist 3.8 reads `xdist_group` marks before a plugin could set them, and on pytest 9.2 not at all
    (pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return internals.scheduler_by_host(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("hosts"):
        # Checks 10-14 only when podinfra check was asked about an upgrade (--upgrade-to).
        handed = [p for p in config.pluginmanager.get_plugins() if isinstance(p, Expected)]
        if not any(e.upgrade for p in handed for e in p.by_node.values()):
            upgrade = [item for item in items if Path(str(item.path)) == HERE / "test_upgrade.py"]
            config.hook.pytest_deselected(items=upgrade)
            items[:] = [item for item in items if item not in upgrade]
        return
    skip = pytest.mark.skip(reason="node checks need --hosts and --podinfra-inventory (podinfra/suite/README.md)")
    for item in items:
        if Path(str(item.path)) in SUITE_FILES:
            item.add_marker(skip)


def _expectations(config: pytest.Config, name: str) -> catalogue.Expectations:
    """What node `name` must show: handed over by podinfra check, else read from the inventory."""
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, Expected):
            return plugin.for_node(name)
    inventory_file = config.getoption("podinfra_inventory")
    if not inventory_file:
        raise pytest.UsageError("give --podinfra-inventory=FILE: the nodes' data (kubernetes_version, registry...)")
    from podinfra.data.inventory import find_host, load_inventory
    from podinfra.data.settings import node_settings

    found = find_host(load_inventory(inventory_file, config.getoption("podinfra_data")), name)
    return catalogue.expectations(node_settings(found))


def node_name(config: pytest.Config, host: Any) -> str:
    return str(config.getoption("podinfra_node") or host.backend.get_hostname())


@pytest.fixture(scope="module")
def node(host: Any, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Node:
    name = node_name(request.config, host)
    return connect(host, name, _expectations(request.config, name), tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="module")
def cri(node: Node, request: pytest.FixtureRequest) -> Iterator[CRI]:
    """The CRI over an SSH-forwarded socket; leftovers of interrupted probes are removed on connect."""
    with ExitStack() as stack:
        found = open_cri(node, stack)
        if found.leftovers_note:
            request.config.stash[NOTES].setdefault(node.name, []).append(found.leftovers_note)
        yield found


def _check_id(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("check")
    return str(marker.args[0]) if marker else None


def _item_node(item: pytest.Item) -> str:
    host = internals.host_of(item)
    return node_name(item.config, host) if host is not None else "local"


@pytest.fixture
def record(request: pytest.FixtureRequest) -> catalogue.CheckResult:
    """The result this test fills in: ``record.expected``, ``record.actual``, a specific ``remediation``,
    and ``record.warn(...)`` / ``record.info(...)`` for what is not a plain pass."""
    check_id = _check_id(request.node)
    assert check_id, "mark the test with @pytest.mark.check(ID)"
    entry = catalogue.catalogue(check_id)
    result = entry.result()
    request.node.stash[RECORD] = result
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    check_id = _check_id(item)
    if check_id is None:
        return report
    entry = catalogue.catalogue(check_id)
    results = item.config.stash[RESULTS].setdefault(_item_node(item), {})
    result = results.get(check_id) or item.stash.get(RECORD, None)
    if result is None:
        result = entry.result()
    result.duration += report.duration
    if report.failed and call.excinfo is not None and waits.is_slow(call.excinfo.value):
        # Too slow is not a wrong answer: WARN with the wait and its limit, and skipped for pytest too.
        slow = str(call.excinfo.value).strip().splitlines()[0] if str(call.excinfo.value).strip() else "timed out"
        result.warn((f"{result.actual}; " if result.actual and result.status != "warn" else "") + slow)
        result.remediation = waits.SLOW_REMEDIATION
        report.outcome, report.longrepr = "skipped", (str(item.path), item.location[1] or 0, f"WARN: {slow}")
    elif report.skipped and result.status not in ("warn", "info"):
        # Not run (a check it needs failed, or a skip with no verdict): not proved, so WARN.
        message = getattr(call.excinfo.value, "msg", call.excinfo.value) if call.excinfo else ""
        result.warn(result.actual or str(message))
    elif report.failed:
        result.status = "fail"
        if call.excinfo is not None:
            recorded = call.excinfo.errisinstance(AssertionError) and result.actual and report.when == "call"
            if not recorded:  # an error, not a finding: say what it was
                message = call.excinfo.exconly().strip().splitlines()
                detail = message[0] if message else "error"
                for prefix in ("Failed: ", "RuntimeError: ", "AssertionError: ", "podinfra.check.cri.CRIError: "):
                    detail = detail.removeprefix(prefix)
                result.actual = (f"{result.actual}; " if result.actual else "") + detail[:1000]
        if report.when == "setup":
            result.remediation = SETUP_REMEDIATION
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
    notes = session.config.stash[NOTES]
    tmp = Path(tempfile.mkstemp(dir=Path(path).resolve().parent, suffix=".tmp")[1])
    tmp.write_text(json.dumps({"written": time.time(), "nodes": nodes, "notes": notes}, indent=2))
    tmp.rename(path)
