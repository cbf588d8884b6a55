"""`podinfra check INVENTORY`: prove, node by node, that pods start from the right pause image.

    podinfra check inventories/lab.py --json report.json --junit report.xml
    podinfra check inventories/lab.py --upgrade-to 1.37    # and checks 10-14: what breaks at 1.37

Runs the pytest-testinfra suite in ``podinfra.suite`` once per node of the inventory's node group,
all nodes at once, over SSH with the inventory's SSH data (``podinfra.check.runner``). Prints a table of
nodes by checks (pass / fail / warn / info), then each failure and warning with its remediation;
exits 1 when any node fails, 2 when the inventory data is wrong. ``--json`` writes kube-bench's
JSON shape, ``--junit`` JUnit XML with one test suite per node (``podinfra.check.report``); ``-`` is
standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import DeployError

from podinfra import versions
from podinfra.check import report
from podinfra.check.catalogue import expectations
from podinfra.check.progress import Progress
from podinfra.check.runner import run_nodes
from podinfra.data.inventory import load_inventory
from podinfra.data.settings import groups, node_settings


def _write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
    else:
        Path(target).write_text(text)


def _node_group(inventory: Any) -> str:
    """The group host data ``podinfra_node_group`` names (e.g. given with --data), else "nodes"."""
    first = next(iter(inventory), None)
    return groups(first).podinfra_node_group if first is not None else "nodes"


def run(args: argparse.Namespace) -> int:
    """The `check` subcommand: 0 when no node fails, 1 when any fails, 2 for bad input, 130 interrupted."""
    started, clock = time.time(), time.monotonic()
    try:
        inventory = load_inventory(str(Path(args.inventory).resolve()), args.data)
        group = args.group or _node_group(inventory)
        hosts = [h for h in inventory.get_group(group, []) if not args.limit or h.name in args.limit]
        if not hosts:
            raise argparse.ArgumentTypeError(
                f"no hosts in group {group!r} of {args.inventory}: name the nodes' group with --group"
            )
        settings = {host.name: node_settings(host) for host in hosts}  # every node's data, before any is asked
        target = args.upgrade_to
        if target is not None:  # an unknown or malformed target stops here (exit 2), before any node is asked
            versions.pause_tag(target, "--upgrade-to takes a minor of podinfra's catalogue")
        expected = {name: expectations(data, upgrade_to=target) for name, data in settings.items()}
    except DeployError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    with ExitStack() as stack:
        log = stack.enter_context(Path(args.log).open("a")) if args.log else None
        progress = Progress(len(hosts), sys.stderr, log)
        try:
            reports = run_nodes(hosts, expected, args.timeout, max(1, args.parallel), progress.done)
        except KeyboardInterrupt:
            progress.close()
            print("podinfra check: interrupted; each node's run was stopped and removed its probe", file=sys.stderr)
            return 130
        held_back = progress.close()
    duration = time.monotonic() - clock
    to_stdout = "-" in (args.json, args.junit)
    out = sys.stderr if to_stdout else sys.stdout
    print(report.render(reports), file=out)
    print("\n".join(["", *report.slowest(reports)] + ([held_back] if held_back else [])), file=out)
    print(f"checked in {duration:.1f}s", file=out)
    if args.json:
        _write(args.json, json.dumps(report.to_json(reports, args.inventory, started, duration), indent=2) + "\n")
    if args.junit:
        _write(args.junit, report.to_junit(reports))
    return 1 if any(r.failed for r in reports) else 0
