"""Benchmarks: podinfra next to what operators would use instead, on the built-in lab.

    .venv/bin/python benchmarks/run.py [--nodes 1,3,10] [--runs 5] [--quick] [--out DIR]

- node configuration: `deploys/node.py` (pyinfra) and `benchmarks/ansible/node.yml` (ansible-core),
  same end state (checked), cold apply on lab-fresh nodes and the no-change re-run, on a fleet of
  containerd --containerd (default 1.6), and again on a containerd 2.1 fleet of --fleet21 nodes in a
  lab of its own (--lab21, brought up once the main lab is down);
- mirror: `podinfra mirror` and `skopeo sync --all` copying the pause set of three Kubernetes
  minors from the lab's upstream into a fresh loopback registry, then again;
- mirror at size: a large set of images (two platforms, layers of a few MB to 512 MB) built
  reproducibly in a loopback registry of its own, copied by `podinfra mirror`, `skopeo sync --all`
  and `crane copy`, and exported and imported by podinfra and by `skopeo copy` (oci-archive);
  `--only large` runs this phase alone (no lab) and merges it into --out's results.json;
- `podinfra check` and the same suite under pytest-xdist (`pytest --hosts=... -n N`) on 1, 3, 10 nodes:
  wall time and control-host CPU; `--only check` runs this phase alone and merges it into --out's
  results.json;
- what a lab node costs in memory.

Writes RESULTS.md, results.png and results.json (every sample) to --out (default: this directory)
and prints the tables; `--skip large` keeps the large-image results already in --out's results.json.
Uses the lab --lab (default "bench"), bringing it up when it is not, and down again at the end when
this run brought it up (unless --keep-lab); the same for --lab21. Needs root, like the lab.
Each figure is the median of --runs runs, the two tools in alternation (A B A B).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import fleetbench
import labtools
import mirrorbench
import nodebench
import plot
import readme
import registrybench
import report
from labtools import PODINFRA, PYINFRA, Lab, progress, run
from phases import bench_check, bench_large, bench_mirror, bench_nodes, measure_scale, startup_seconds

from podinfra.lab import lifecycle
from podinfra.lab.state import LabError, LabState

HERE = Path(__file__).resolve().parent
# Refuse a lab that would leave the machine short: a node's PSS is about 30 MiB (RESULTS.md, lab scale; 150 nodes
# took about 4 GB), so 96 leaves room for a fleet of 200 on this machine and still refuses what would not fit.
MIB_PER_NODE_GUARD = 96
# A lab host takes about 8 of root's inotify instances (systemd, logind, agetty, containerd); past
# fs.inotify.max_user_instances (128 by default) nodes hang at boot, and so would other engineers' labs.
INOTIFY_PER_HOST = 8  # measured: RESULTS.md, lab scale
INOTIFY_HEADROOM = 16  # left for other labs on the machine (two more hosts)


def sizes_arg(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("give node counts such as 1,3,10")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", type=sizes_arg, help="node counts for node configuration (default 1,3,10; quick: 1)")
    p.add_argument("--runs", type=int, help="runs per figure (default 5; quick: 1)")
    p.add_argument("--quick", action="store_true", help="1 run, 1 node, no `podinfra check`, no CPU sampling")
    p.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md, results.png and results.json go")
    p.add_argument("--lab", default="bench", help="lab name (default bench)")
    p.add_argument("--subnet", default="10.213.9.0/24", help="lab subnet, when this run brings the lab up")
    p.add_argument("--upstream-port", type=int, default=5109, help="lab upstream port, when this run brings it up")
    p.add_argument("--containerd", default="1.6", help="containerd line(s) of the lab's nodes (default 1.6)")
    p.add_argument("--fleet21", type=int, help="nodes of the containerd 2.1 fleet (default 10; quick: 1; 0: none)")
    p.add_argument("--lab21", default="bench21", help="the 2.1 fleet's lab (default bench21)")
    p.add_argument("--subnet21", default="10.213.10.0/24", help="its subnet, when this run brings it up")
    p.add_argument("--upstream-port21", type=int, default=5110, help="its upstream port, when this run brings it up")
    p.add_argument("--keep-lab", action="store_true", help="leave up the labs this run brought up")
    p.add_argument("--render", type=Path, metavar="JSON", help="only write RESULTS.md and the plot from a results.json")
    p.add_argument(
        "--only",
        choices=["large", "check", "registry", "fleet"],
        help="run only the large-image mirror phase (no lab), the check phase, the registry load phase or the fleet "
        "phase (--fleet-sizes), merged into --out's results",
    )
    p.add_argument(
        "--skip", choices=["large"], action="append", default=[], help="keep this phase's results from --out's"
    )
    p.add_argument(
        "--fleet-sizes", type=sizes_arg, default=[10, 50, 100, 200], help="node counts of --only fleet (10,50,100,200)"
    )
    p.add_argument("--large-runs", type=int, help="runs of the large-image phase (default 3; quick: 1)")
    p.add_argument("--large-scale", type=float, help="layer sizes x this (default 1; quick: 1/64)")
    args = p.parse_args(argv)
    args.nodes = args.nodes or ([1] if args.quick else [1, 3, 10])
    args.runs = args.runs or (1 if args.quick else 5)
    args.fleet21 = (1 if args.quick else 10) if args.fleet21 is None else args.fleet21
    args.large_runs = args.large_runs or (1 if args.quick else 3)
    args.large_scale = args.large_scale or (1 / 64 if args.quick else 1.0)
    if args.runs < 1 or args.large_runs < 1:
        p.error("--runs, --large-runs: 1 or more")
    return args


# --- the run ----------------------------------------------------------------------------------------------


def versions(lab: Lab) -> str:
    containerd = labtools.must(run(["ssh", "-F", str(lab.state.ssh_config), "node1", "containerd --version"]), "ssh")
    skopeo = run(["skopeo", "--version"]).stdout.split()[-1]
    registry = run(["docker-registry", "--version"]).stdout.split()
    return ", ".join(
        [
            f"pyinfra {metadata.version('pyinfra')}",
            f"ansible-core {metadata.version('ansible-core')}",
            f"skopeo {skopeo}",
            f"docker-registry {registry[2] if len(registry) > 2 else '?'}",
            f"containerd {containerd.stdout.split()[2]} on the nodes",
            f"Python {platform.python_version()}",
        ]
    )


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report.markdown(results)
    (out / "RESULTS.md").write_text(text)
    plot.plot(results, out / "results.png")
    if "fleet" in results:
        fleetbench.plot(results["fleet"], out / "fleet.png")
    if out.resolve() == HERE:  # the published results: the README's table follows them
        readme.README.write_text(readme.rewrite(readme.README.read_text(), results))
    print(text)
    progress(f"wrote {out / 'RESULTS.md'}, {out / 'results.png'}, {out / 'results.json'}")


def previous_results(out: Path) -> dict[str, Any]:
    """--out's results.json, whose phases a run of some phases keeps."""
    path = out / "results.json"
    return json.loads(path.read_text()) if path.exists() else {}


def only_large(args: argparse.Namespace, command: str) -> int:
    """The large-image phase alone (no lab: its upstream is a loopback registry of its own), put into the
    results.json already in --out, whose other phases keep their own run and date."""
    results = previous_results(args.out)
    workdir = Path(tempfile.mkdtemp(prefix="podinfra-bench-"))
    try:
        large = bench_large(args.large_runs, args.large_scale, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    large["meta"]["command"] = command
    results["mirror_large"] = large
    if "meta" not in results:  # no earlier run to merge with: the large phase's tables alone
        write_large_only(large, args.out)
        return 0
    write(results, args.out)
    return 0


def write_large_only(large: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"mirror_large": large}, indent=2) + "\n")
    text = report.large_markdown(large)
    (out / "RESULTS.md").write_text(text)
    print(text)


def lab_refused(name: str, nodes: int) -> str | None:
    """Why a lab of `nodes` nodes (and its registry) should not be brought up on this machine, or None."""
    try:
        LabState.load(name)
        return None  # up already
    except LabError:
        pass
    hosts = nodes + 1
    if labtools.mem_available_kib() // 1024 < hosts * MIB_PER_NODE_GUARD + 2048:
        return f"not enough memory for a {hosts}-host lab {name}: choose fewer nodes"
    need = labtools.root_inotify_instances() + hosts * INOTIFY_PER_HOST + INOTIFY_HEADROOM
    # `lab up` raises the limit itself (podinfra.lab.lifecycle.INOTIFY) before it boots anything.
    if need > max(labtools.inotify_limit(), lifecycle.INOTIFY["max_user_instances"]):
        return (
            f"a {hosts}-host lab would take root's inotify instances to about {need}, over "
            f"fs.inotify.max_user_instances = {labtools.inotify_limit()} (nodes then hang at boot): choose "
            "fewer nodes, or raise the limit (sysctl fs.inotify.max_user_instances=512)"
        )
    return None


def main_lab(args: argparse.Namespace) -> contextlib.AbstractContextManager[Lab]:
    return labtools.session(args.lab, max(args.nodes), args.subnet, args.upstream_port, args.containerd, args.keep_lab)


def full_run(args: argparse.Namespace, command: str, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with main_lab(args) as lab:
        results["meta"] = {
            "command": command,
            **labtools.stamp(),
            "machine": f"{os.cpu_count()} cores, "
            f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024**2:.0f} GiB, Linux {platform.release()}",
            "labs": labtools.labs_up(),
            "cores": os.cpu_count(),
            "containerd": args.containerd,
            "runs": args.runs,
            "versions": versions(lab),
            "minors": list(mirrorbench.MINORS),
            "tags": mirrorbench.tags(),
        }
        results["mirror"] = bench_mirror(lab, args.runs, workdir)
        if "large" not in args.skip:
            results["mirror_large"] = bench_large(args.large_runs, args.large_scale, workdir)
            results["mirror_large"]["meta"]["command"] = command
        elif "mirror_large" in (previous := previous_results(args.out)):
            results["mirror_large"] = previous["mirror_large"]
        results["nodes"], results["equivalence"] = bench_nodes(lab, args.nodes, args.runs, workdir)
        if args.quick:
            results["check"] = {"available": False, "note": "skipped with --quick."}
        else:
            results["check"] = bench_check(lab, args.runs, workdir, command)
        if not args.quick:
            results["registry_load"] = registrybench.bench_registry(lab, args.runs)
        results["scale"] = measure_scale(lab, sample_cpu=not args.quick)
        samples = 1 if args.quick else 5
        results["meta"]["startups"] = {
            "podinfra versions": startup_seconds([PODINFRA, "versions"], samples),
            "pyinfra --version": startup_seconds([PYINFRA, "--version"], samples),
            "ansible-playbook --version": startup_seconds([nodebench.ANSIBLE_PLAYBOOK, "--version"], samples),
            "skopeo --version": startup_seconds(["skopeo", "--version"], samples),
            "python -c pass": startup_seconds([sys.executable, "-c", "pass"], samples),
        }
    if args.fleet21:
        # After the main lab is down: the two fleets never share the machine's cores.
        with labtools.session(
            args.lab21, args.fleet21, args.subnet21, args.upstream_port21, "2.1", args.keep_lab
        ) as lab21:
            nodes, equivalence = bench_nodes(lab21, [args.fleet21], args.runs, workdir)
            results["fleet21"] = {
                "lab": lab21.name,
                "labs": labtools.labs_up(),
                "containerd": sorted({n.containerd_version for n in lab21.nodes}),
                "nodes": nodes,
                "equivalence": equivalence,
            }
    return results


def only_check(args: argparse.Namespace, command: str, workdir: Path) -> dict[str, Any]:
    results = previous_results(args.out)
    if "meta" not in results:
        raise SystemExit(f"--only {args.only} merges into {args.out / 'results.json'}: run the whole benchmark first")
    if args.only == "fleet":
        size = max(args.fleet_sizes)
        with labtools.session(args.lab, size, args.subnet, args.upstream_port, args.containerd, args.keep_lab) as lab:

            def save(fleet: dict[str, Any]) -> None:
                fleet["meta"]["command"] = command
                write({**results, "fleet": fleet}, args.out)

            results["fleet"] = fleetbench.bench_fleet(lab, args.fleet_sizes, workdir, save)
        return results
    with main_lab(args) as lab:
        if args.only == "registry":
            results["registry_load"] = registrybench.bench_registry(lab, args.runs)
            results["registry_load"]["meta"]["command"] = command
        else:
            results["check"] = bench_check(lab, args.runs, workdir, command)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    if args.render:
        write(json.loads(args.render.read_text()), args.out)
        return 0
    if args.only == "large":
        return only_large(args, command)
    if os.geteuid() != 0:
        print("benchmarks/run.py needs root (the lab does)", file=sys.stderr)
        return 2
    refused = lab_refused(args.lab, max(args.fleet_sizes if args.only == "fleet" else args.nodes))
    if not refused and args.fleet21 and args.only is None:
        refused = lab_refused(args.lab21, args.fleet21)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="podinfra-bench-"))
    try:
        results = only_check(args, command, workdir) if args.only else full_run(args, command, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.only is None:
        results["meta"]["seconds"] = round(time.monotonic() - started)
    write(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
