"""`podinfra lab up|down|fetch|reset|status`: the lab's subcommands, parsed here so that the `podinfra` command
loads the lab only when one of them runs."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from podinfra import table
from podinfra.lab.state import (
    CONTAINERD_LINES,
    CRIO,
    DEFAULT_LAB,
    DEFAULT_LINES,
    DEFAULT_SUBNET,
    DEFAULT_UPSTREAM_PORT,
    RUNTIMES,
    LabConfig,
    LabError,
)


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.split(",") if line.strip())


def containerd_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--containerd",
        type=_lines,
        default=None,
        metavar="LINE[,LINE...]",
        help=f"containerd lines given to the nodes in turn, of {', '.join(CONTAINERD_LINES)} (default: {default})",
    )


def runtimes_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runtimes",
        type=_lines,
        default=None,
        metavar="RUNTIME[,RUNTIME...]",
        help=f"runtimes given to the nodes in turn: containerd lines and {CRIO} (CRI-O 1.36); --containerd with {CRIO}",
    )


def chosen_runtimes(args: argparse.Namespace, default: tuple[str, ...]) -> tuple[str, ...]:
    if args.containerd and args.runtimes:
        raise LabError("give --runtimes or --containerd, not both")
    if args.containerd and CRIO in args.containerd:
        raise LabError(f"--containerd {','.join(args.containerd)}: {CRIO} is not a containerd line; use --runtimes")
    return tuple(args.runtimes or args.containerd or default)


def _lab_status(name: str, as_json: bool) -> None:
    from podinfra.lab import lifecycle

    report = lifecycle.status(name)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    rows = [
        (n["name"], n["group"], n["address"], f"{n['runtime']} {n['version']}", n["state"]) for n in report["nodes"]
    ]
    print(table.render(("NODE", "GROUP", "ADDRESS", "RUNTIME", "STATE"), rows))
    upstream = report["registries"]["upstream"]
    print(f"\nupstream registry  {upstream['address']} ({upstream['state']}, {upstream['reachable_from']})")
    print(f"local registry     {report['registries']['local']['address']} on node 'registry'")
    print(f"ssh                ssh -F {report['ssh']['config']} node1")
    print(f"inventory          PODINFRA_LAB={report['lab']} pyinfra {report['inventory']} ...")


def add_parser(commands: Any) -> None:
    """``podinfra lab ...`` on the `podinfra` command's subparsers."""
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
    containerd_option(up, ",".join(DEFAULT_LINES))
    runtimes_option(up)
    lab_commands.add_parser("down", parents=[named], help="remove everything the lab made")
    fetch = lab_commands.add_parser(
        "fetch", help="build the runtimes' layers (Debian packages, release tarballs) into the cache"
    )
    containerd_option(fetch, ",".join(RUNTIMES))
    runtimes_option(fetch)
    lab_commands.add_parser("reset", parents=[named], help="nodes back to their fresh runtime state")
    status = lab_commands.add_parser("status", parents=[named], help="nodes, registries, SSH key and inventory")
    status.add_argument("--json", action="store_true")
    lab.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from podinfra.lab import lifecycle

    if args.lab_command == "up":
        runtimes = chosen_runtimes(args, DEFAULT_LINES)
        lifecycle.up(LabConfig(args.name, args.subnet, args.nodes, args.upstream_port, runtimes))
        _lab_status(args.name, as_json=False)
    elif args.lab_command == "down":
        lifecycle.down(args.name)
    elif args.lab_command == "fetch":
        for runtime, version in lifecycle.fetch(chosen_runtimes(args, RUNTIMES)).items():
            print(f"{runtime}: {version}")
    elif args.lab_command == "reset":
        lifecycle.reset(args.name)
    else:
        _lab_status(args.name, args.json)
    return 0
