"""The `podinfra` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from podinfra.errors import PodinfraError
from podinfra.lab import cli as lab_cli
from podinfra.versions import UPSTREAM, newest_kubernetes


def _later(module: str, function: str) -> Callable[[argparse.Namespace], Any]:
    """A subcommand's function, imported when that subcommand runs: every command pays only for its own
    imports (requests for the registry commands, pyinfra for check), not for all of them."""
    return lambda args: getattr(importlib.import_module(module), function)(args)


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubernetes-version", action="append", default=[], help="pause for this minor (repeatable)")
    p.add_argument("--image", action="append", default=[], help="any other image reference (repeatable)")
    p.add_argument("--source", default=UPSTREAM, help=f"where {UPSTREAM} images are read from (a mirror of it)")
    p.add_argument("--source-insecure", action="store_true", help="plain HTTP to the source")
    p.add_argument("--source-ca-file", help="CA bundle for the source's TLS")
    p.add_argument("--platform", action="append", default=[], help="limit to OS/ARCH[/VARIANT] (repeatable)")


def add_destination_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, metavar="REGISTRY[/PREFIX]", help="the local registry")
    p.add_argument("--insecure", action="store_true", help="plain HTTP to the destination (never the default)")
    p.add_argument("--ca-file", help="CA bundle for the destination's TLS")
    p.add_argument("--username", default=os.environ.get("PODINFRA_REGISTRY_USERNAME"))
    p.add_argument("--password-file", help="file holding the destination password (or env PODINFRA_REGISTRY_PASSWORD)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="podinfra", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    lab_cli.add_parser(commands)
    demo = commands.add_parser("demo", help="the whole story on the built-in lab: mirror, configure, verify")
    demo.add_argument("--nodes", type=int, default=3)
    demo.add_argument("--kubernetes-version", default=newest_kubernetes(), help="default: the newest in the catalogue")
    lab_cli.containerd_option(demo, "the lines that Kubernetes version supports")
    demo.set_defaults(run=_later("podinfra.demo", "main"))
    versions = commands.add_parser("versions", help="the pause tag per Kubernetes minor and containerd line")
    versions.add_argument("--json", action="store_true")
    versions.set_defaults(run=_later("podinfra.images.cli", "show_versions"))
    mirror = commands.add_parser("mirror", help="copy pause (and other images) into a local registry")
    add_source_arguments(mirror)
    add_destination_arguments(mirror)
    mirror.set_defaults(run=_later("podinfra.images.cli", "mirror"))
    export = commands.add_parser("export", help="write images to an offline archive (OCI layout tar)")
    add_source_arguments(export)
    export.add_argument("-o", "--output", required=True, help="archive path, e.g. bundle.tar")
    export.set_defaults(run=_later("podinfra.images.cli", "export"))
    imp = commands.add_parser("import", help="push an offline archive into a local registry")
    imp.add_argument("archive")
    add_destination_arguments(imp)
    imp.set_defaults(run=_later("podinfra.images.cli", "import_"))
    probe = commands.add_parser("probe-image", help="build check 8's probe image here and push it into a registry")
    add_destination_arguments(probe)
    probe.add_argument("--busybox", default="/bin/busybox", help="a static busybox (Debian: busybox-static)")
    probe.set_defaults(run=_later("podinfra.images.probe_image", "run"))
    check = commands.add_parser("check", help="prove that every node starts pod sandboxes from the right pause image")
    check.add_argument("inventory", help="pyinfra inventory file, e.g. inventories/lab.py")
    check.add_argument("--group", help="the inventory group to check (default: host data podinfra_node_group, nodes)")
    check.add_argument(
        "--limit", action="append", default=[], metavar="NODE", help="check only these nodes (repeatable)"
    )
    check.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="override host data, as pyinfra"
    )
    check.add_argument(
        "--upgrade-to", metavar="VERSION", help="also check what breaks if the nodes move to this Kubernetes minor"
    )
    check.add_argument("--json", metavar="FILE", help="write kube-bench's JSON report (- for standard output)")
    check.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI (- for standard output)")
    check.add_argument("--parallel", type=int, default=32, help="nodes checked at once (default 32)")
    check.add_argument("--timeout", type=float, default=300, help="seconds per node (default 300)")
    check.add_argument(
        "--log",
        metavar="FILE",
        help="append a line per node as its check ends (on a terminal of fewer rows than "
        "nodes, the only place they go)",
    )
    check.set_defaults(run=_later("podinfra.check.command", "run"))
    return top


def _bad_input(exc: Exception) -> bool:
    """What an operator's input causes: podinfra's own errors, pyinfra's inventory and data errors (known
    by module, so that commands that do not use pyinfra do not import it), files that cannot be read."""
    return isinstance(exc, (PodinfraError, argparse.ArgumentTypeError, OSError, ValueError)) or type(
        exc
    ).__module__.startswith("pyinfra.")


def main(argv: list[str] | None = None) -> int:
    """0: every node passed (or the command did its work); 1: a node failed; 2: usage, inventory or data
    error, one line naming the key or flag and its fix, never a traceback; 130: interrupted."""
    args = parser().parse_args(argv)  # usage errors: argparse's own line, exit 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("podinfra: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("PODINFRA_TRACEBACK"):
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the message held
        if not _bad_input(exc):  # a podinfra bug: still one line, the traceback on request
            text = f"unexpected {type(exc).__name__}: {text} (PODINFRA_TRACEBACK=1 shows where)"
        print(f"podinfra: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
