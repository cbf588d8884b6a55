"""The `podinfra` command."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from podinfra import commands as commands_module
from podinfra import demo as demo_module
from podinfra import table
from podinfra.demo import StepFailed
from podinfra.lab import lifecycle
from podinfra.lab.state import DEFAULT_LAB, DEFAULT_SUBNET, DEFAULT_UPSTREAM_PORT, LabConfig, LabError
from podinfra.reference import ReferenceError
from podinfra.registry import RegistryError
from podinfra.versions import VersionError, newest_kubernetes


def _lab_status(name: str, as_json: bool) -> None:
    report = lifecycle.status(name)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    rows = [(n["name"], n["group"], n["address"], n["state"]) for n in report["nodes"]]
    print(table.render(("NODE", "GROUP", "ADDRESS", "STATE"), rows))
    upstream = report["registries"]["upstream"]
    print(f"\nupstream registry  {upstream['address']} ({upstream['state']}, {upstream['reachable_from']})")
    print(f"local registry     {report['registries']['local']['address']} on node 'registry'")
    print(f"ssh                ssh -F {report['ssh']['config']} node1")
    print(f"inventory          PODINFRA_LAB={report['lab']} pyinfra {report['inventory']} ...")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="podinfra", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    lab = commands.add_parser("lab", help="the built-in lab of nspawn nodes")
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument(
        "--name", default=os.environ.get("PODINFRA_LAB", DEFAULT_LAB), help="lab name (env PODINFRA_LAB)"
    )
    lab_commands = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_commands.add_parser("up", parents=[named], help="bring the lab up (safe to repeat)")
    up.add_argument("--nodes", type=int, default=3, help="Kubernetes nodes, besides the registry node")
    up.add_argument("--subnet", default=DEFAULT_SUBNET)
    up.add_argument("--upstream-port", type=int, default=DEFAULT_UPSTREAM_PORT)
    lab_commands.add_parser("down", parents=[named], help="remove everything the lab made")
    lab_commands.add_parser("reset", parents=[named], help="nodes back to their fresh runtime state")
    status = lab_commands.add_parser("status", parents=[named], help="nodes, registries, SSH key and inventory")
    status.add_argument("--json", action="store_true")
    demo = commands.add_parser("demo", help="the whole story on the built-in lab: mirror, configure, verify")
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--kubernetes-version", default=newest_kubernetes(), help="default: the newest in the catalogue")
    demo.set_defaults(run=lambda a: demo_module.run(LabConfig(nodes=a.nodes), a.kubernetes_version))
    versions = commands.add_parser("versions", help="the pause tag per Kubernetes minor and containerd line")
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(run=commands_module.show_versions)
    mirror = commands.add_parser("mirror", help="copy pause (and other images) into a local registry")
    commands_module.add_source_arguments(mirror)
    commands_module.add_destination_arguments(mirror)
    mirror.set_defaults(run=commands_module.mirror)
    export = commands.add_parser("export", help="write images to an offline archive (OCI layout tar)")
    commands_module.add_source_arguments(export)
    export.add_argument("-o", "--output", required=True, help="archive path, e.g. bundle.tar")
    export.set_defaults(run=commands_module.export)
    imp = commands.add_parser("import", help="push an offline archive into a local registry")
    imp.add_argument("archive")
    commands_module.add_destination_arguments(imp)
    imp.set_defaults(run=commands_module.import_)
    check = commands.add_parser("check", help="prove that every node starts pod sandboxes from the right pause image")
    check.add_argument("inventory", help="pyinfra inventory file, e.g. inventories/lab.py")
    check.add_argument("--group", default="nodes", help="the inventory group to check (default: nodes)")
    check.add_argument(
        "--limit", action="append", default=[], metavar="NODE", help="check only these nodes (repeatable)"
    )
    check.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="override host data, as pyinfra"
    )
    check.add_argument("--json", metavar="FILE", help="write a kube-bench-like JSON report")
    check.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI")
    check.add_argument("--parallel", type=int, default=32, help="nodes checked at once (default 32)")
    check.add_argument("--timeout", type=float, default=300, help="seconds per node (default 300)")
    # Imported when used: it loads pyinfra, half a second that every other command would pay.
    check.set_defaults(run=lambda args: importlib.import_module("podinfra.check").run(args))
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command != "lab":
            return int(args.run(args))
        if args.command == "lab":
            if args.lab_command == "up":
                lifecycle.up(LabConfig(args.name, args.subnet, args.nodes, args.upstream_port))
                _lab_status(args.name, as_json=False)
            elif args.lab_command == "down":
                lifecycle.down(args.name)
            elif args.lab_command == "reset":
                lifecycle.reset(args.name)
            else:
                _lab_status(args.name, args.json)
    except (LabError, RegistryError, VersionError, ReferenceError, argparse.ArgumentTypeError, StepFailed) as exc:
        print(f"podinfra: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
