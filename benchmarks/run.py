"""Benchmarks: podinfra next to what operators would use instead, on the built-in lab.

    .venv/bin/python benchmarks/run.py [--nodes 1,3,10] [--runs 5] [--quick] [--out DIR]

- node configuration: `deploys/node.py` (pyinfra) and `benchmarks/ansible/node.yml` (ansible-core),
  same end state (checked), cold apply on lab-fresh nodes and the no-change re-run;
- mirror: `podinfra mirror` and `skopeo sync --all` copying the pause set of three Kubernetes
  minors from the lab's upstream into a fresh loopback registry, then again;
- mirror at size: a large set of images (two platforms, layers of a few MB to 512 MB) built
  reproducibly in a loopback registry of its own, copied by `podinfra mirror`, `skopeo sync --all`
  and `crane copy`, and exported and imported by podinfra and by `skopeo copy` (oci-archive);
  `--only large` runs this phase alone (no lab) and merges it into --out's results.json;
- `podinfra check` on 1, 3, 10 nodes, when the command exists;
- what a lab node costs in memory.

Writes RESULTS.md, results.png and results.json (every sample) to --out (default: this directory)
and prints the tables. Uses the lab --lab (default "bench"), bringing it up when it is not, and
down again at the end when this run brought it up (unless --keep-lab). Needs root, like the lab.
Each figure is the median of --runs runs, the two tools in alternation (A B A B).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import labtools
import mirrorbench
import nodebench
import report
from labtools import INVENTORY, PODINFRA, PYINFRA, Lab, progress, run

from podinfra.lab import lifecycle
from podinfra.lab.state import LabError, LabState
from podinfra.registry import RegistryClient

HERE = Path(__file__).resolve().parent
MIB_PER_NODE_GUARD = 256  # refuse a lab that would leave the machine short (a node needs far less, see RESULTS)
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
    p.add_argument("--keep-lab", action="store_true", help="leave up a lab this run brought up")
    p.add_argument("--render", type=Path, metavar="JSON", help="only write RESULTS.md and the plot from a results.json")
    p.add_argument(
        "--only", choices=["large"], help="run only the large-image mirror phase (no lab), merged into --out's results"
    )
    p.add_argument("--large-runs", type=int, help="runs of the large-image phase (default 3; quick: 1)")
    p.add_argument("--large-scale", type=float, help="layer sizes x this (default 1; quick: 1/64)")
    args = p.parse_args(argv)
    args.nodes = args.nodes or ([1] if args.quick else [1, 3, 10])
    args.runs = args.runs or (1 if args.quick else 5)
    args.large_runs = args.large_runs or (1 if args.quick else 3)
    args.large_scale = args.large_scale or (1 / 64 if args.quick else 1.0)
    if args.runs < 1 or args.large_runs < 1:
        p.error("--runs, --large-runs: 1 or more")
    return args


# --- phases -----------------------------------------------------------------------------------------------


def bench_mirror(lab: Lab, runs: int, workdir: Path) -> dict[str, Any]:
    upstream = lab.state.upstream
    data: dict[str, Any] = {tool: {"cold": [], "recopy": []} for tool in (*mirrorbench.TOOLS, "in_process")}
    for i in range(runs):
        for tool in mirrorbench.TOOLS:
            progress(f"mirror run {i + 1}/{runs}: {tool} cold copy and re-copy")
            cold, again = mirrorbench.timed_pair(tool, upstream, workdir)
            data[tool]["cold"].append(cold.seconds)
            data[tool]["recopy"].append(again.seconds)
        progress(f"mirror run {i + 1}/{runs}: podinfra in-process cold copy and re-copy")
        seconds = mirrorbench.in_process_pair(upstream)
        data["in_process"]["cold"].append(seconds[0])
        data["in_process"]["recopy"].append(seconds[1])
    for tool in mirrorbench.TOOLS:
        progress(f"mirror: {tool} once more through the counting proxy")
        cold, again = mirrorbench.counted_pair(tool, upstream, workdir)
        data[tool].update(
            sent_cold=cold.sent,
            sent_recopy=again.sent,
            requests_cold=cold.requests,
            requests_recopy=again.requests,
            reported_cold=cold.reported,
            reported_recopy=again.reported,
        )
    return data


def bench_large(runs: int, scale: float, workdir: Path) -> dict[str, Any]:
    """The large set in a loopback upstream of its own: cold copy and re-copy by each tool, podinfra's copy
    in-process, export + import by podinfra and skopeo, in alternation; then once more through the counting proxy."""
    crane = mirrorbench.crane_binary()
    tools = [tool for tool in mirrorbench.LARGE_TOOLS if tool != "crane" or crane]
    copy: dict[str, Any] = {tool: {"cold": [], "recopy": [], "rss_cold": [], "rss_recopy": []} for tool in tools}
    archive: dict[str, Any] = {
        tool: {"export": [], "import": [], "rss_export": [], "rss_import": [], "bytes": 0}
        for tool in mirrorbench.ARCHIVE_TOOLS
    }
    in_process: dict[str, list[float]] = {"cold": [], "recopy": []}
    with mirrorbench.fresh_registry(mirrorbench.MEMORY) as upstream:
        progress(f"large set: building {mirrorbench.large_bytes(scale) / 1e9:.2f} GB of layers in {upstream}")
        started = time.perf_counter()
        published = mirrorbench.build_large(RegistryClient(f"http://{upstream}"), scale)
        built = time.perf_counter() - started
        for i in range(runs):
            for tool in tools:
                progress(f"large run {i + 1}/{runs}: {tool} cold copy and re-copy")
                cold, again, _, _ = mirrorbench.large_pair(tool, upstream, published, workdir, crane)
                copy[tool]["cold"].append(cold.seconds)
                copy[tool]["recopy"].append(again.seconds)
                copy[tool]["rss_cold"].append(cold.rss_mib)
                copy[tool]["rss_recopy"].append(again.rss_mib)
            progress(f"large run {i + 1}/{runs}: podinfra in-process cold copy and re-copy")
            seconds = mirrorbench.in_process_large(upstream, published)
            in_process["cold"].append(seconds[0])
            in_process["recopy"].append(seconds[1])
            for tool in mirrorbench.ARCHIVE_TOOLS:
                progress(f"large run {i + 1}/{runs}: {tool} export and import")
                exported, imported, size = mirrorbench.archive_round(tool, upstream, published, workdir)
                archive[tool]["export"].append(exported.seconds)
                archive[tool]["import"].append(imported.seconds)
                archive[tool]["rss_export"].append(exported.rss_mib)
                archive[tool]["rss_import"].append(imported.rss_mib)
                archive[tool]["bytes"] = size
        for tool in tools:
            progress(f"large set: {tool} once more through the counting proxy")
            _, _, cold_counts, again_counts = mirrorbench.large_pair(
                tool, upstream, published, workdir, crane, through_proxy=True
            )
            copy[tool].update(
                sent_cold=cold_counts[0],
                requests_cold=cold_counts[1],
                sent_recopy=again_counts[0],
                requests_recopy=again_counts[1],
            )
    crane_package = crane_package_version() if crane else None
    return {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "runs": runs,
            "scale": scale,
            "bytes": mirrorbench.large_bytes(scale),
            "images": {
                repo: [round(mib * scale, 3) for mib in sizes] for repo, sizes in mirrorbench.LARGE_IMAGES.items()
            },
            "platforms": [mirrorbench.platform_text(p) for p in mirrorbench.LARGE_PLATFORMS],
            "build_seconds": built,
            "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "crane": crane_package,
            "versions": ", ".join(
                [
                    f"skopeo {run(['skopeo', '--version']).stdout.split()[-1]}",
                    f"crane {crane_package or 'unavailable'} (Debian sid)",
                    f"docker-registry {run(['docker-registry', '--version']).stdout.split()[2]}",
                    f"Python {platform.python_version()}",
                ]
            ),
        },
        "copy": copy,
        "in_process": in_process,
        "archive": archive,
    }


def crane_package_version() -> str | None:
    from podinfra.lab import suites

    found = suites.cached("crane", "0.20")
    return found[1] if found else None


def bench_nodes(lab: Lab, sizes: list[int], runs: int, workdir: Path) -> tuple[dict[str, Any], dict[str, list[str]]]:
    inventory = nodebench.ansible_inventory(lab, workdir)
    data: dict[str, Any] = {}
    differences: dict[str, list[str]] = {}
    for size in sizes:
        names = [n.name for n in lab.nodes[:size]]
        row: dict[str, Any] = {tool: {"cold": [], "rerun": [], "changed_cold": []} for tool in nodebench.TOOLS}
        for i in range(runs):
            states = {}
            for tool in nodebench.TOOLS:
                progress(f"nodes={size} run {i + 1}/{runs}: {tool}: reset, cold apply, re-run")
                labtools.reset(lab, names)
                cold = nodebench.apply(tool, lab, names, inventory)
                again = nodebench.apply(tool, lab, names, inventory)
                if cold.changed == 0 or again.changed != 0:
                    raise RuntimeError(f"{tool}: cold run changed {cold.changed}, re-run {again.changed} (want >0, 0)")
                row[tool]["cold"].append(cold.seconds)
                row[tool]["rerun"].append(again.seconds)
                row[tool]["changed_cold"].append(cold.changed)
                if i == 0:
                    states[tool] = labtools.end_state(lab, names)
            if i == 0:
                differences[str(size)] = labtools.differences(states["podinfra"], states["ansible"])
        data[str(size)] = row
    return data, differences


def check_available() -> bool:
    return run([PODINFRA, "check", "--help"]).returncode == 0


def probe_image() -> str | None:
    """The image check 8 runs, mirrored into the lab registry when the lab's upstream carries it."""
    from podinfra.checks import DEFAULT_PROBE_IMAGE

    return DEFAULT_PROBE_IMAGE


def check_once(lab: Lab, names: list[str], workdir: Path) -> tuple[float, str, dict[str, float]]:
    """Wall time, outcome, and CPU seconds: of podinfra check and its processes on this host ("control"), and
    of the whole machine ("machine"), whose 2 cores also run the nodes' sshd, containerd, shims, runc and CNI."""
    report_file = workdir / "check.json"
    report_file.unlink(missing_ok=True)
    limits = [arg for name in names for arg in ("--limit", name)]
    machine, children = labtools.busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = run([PODINFRA, "check", INVENTORY, *limits, "--json", str(report_file)], lab.env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    control = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    cpu = {"control": control, "machine": labtools.busy_cpu_seconds() - machine}
    try:
        nodes = json.loads(report_file.read_text())["nodes"]
        passed = sum(1 for node in nodes if node.get("status") == "PASS")
        failed = sorted({c["name"] for node in nodes for c in node.get("checks", []) if c.get("status") == "FAIL"})
        outcome = f"{passed}/{len(nodes)} nodes pass" + (f" (failing: {', '.join(failed)})" if failed else "")
    except (OSError, ValueError, KeyError, TypeError):
        outcome = f"exit {result.returncode}, no JSON report: {(result.stderr or result.stdout).strip()[-200:]}"
    return seconds, outcome, cpu


def bench_check(lab: Lab, sizes: list[int], runs: int, workdir: Path) -> dict[str, Any]:
    probe = probe_image()
    if probe:
        repository = probe.split("/", 1)[1].rsplit(":", 1)[0]
        catalog = run(["curl", "-s", f"http://{lab.state.upstream}/v2/_catalog"]).stdout
        if f'"{repository}"' in catalog:
            progress(f"check: mirroring {probe} for check 8")
            labtools.must(
                run(
                    [PYINFRA, "-y", INVENTORY, "deploys/mirror.py", "--data", f"mirror_images={json.dumps([probe])}"],
                    lab.env,
                ),
                "deploys/mirror.py (probe image)",
            )
    all_names = [n.name for n in lab.nodes[: max(sizes)]]
    progress(f"check: configuring {len(all_names)} node(s) with deploys/node.py first")
    nodebench.apply("podinfra", lab, all_names, workdir / "unused")
    data: dict[str, Any] = {
        str(size): {"seconds": [], "outcome": "", "control_cpu": [], "machine_cpu": []} for size in sizes
    }
    for i in range(runs):
        for size in sizes:
            progress(f"check run {i + 1}/{runs}: {size} node(s)")
            seconds, outcome, cpu = check_once(lab, all_names[:size], workdir)
            data[str(size)]["seconds"].append(seconds)
            data[str(size)]["outcome"] = outcome
            data[str(size)]["control_cpu"].append(cpu["control"])
            data[str(size)]["machine_cpu"].append(cpu["machine"])
    return data


def measure_scale(lab: Lab, sample_cpu: bool) -> dict[str, Any]:
    progress("lab scale: memory and inotify instances of each node")
    nodes = [n for n in lab.nodes if n.pid]
    delta = None
    if lab.mem_before_kib is not None and lab.mem_after_kib is not None:
        delta = (lab.mem_before_kib - lab.mem_after_kib) / 1024
    idle = None
    if sample_cpu:
        progress("lab scale: CPU of each idle node (10 s)")
        idle = labtools.idle_cpu_per_node([n.pid for n in nodes if n.pid])
    return {
        "lab_nodes": len(lab.nodes),
        "node_pss_mib": [labtools.node_pss_kib(n.pid) / 1024 for n in nodes if n.pid],
        "registry_pss_mib": labtools.node_pss_kib(lab.registry.pid) / 1024 if lab.registry.pid else 0.0,
        "lab_up_delta_mib": delta,
        "mem_total_mib": int(Path("/proc/meminfo").read_text().split()[1]) / 1024,
        "mem_available_mib": labtools.mem_available_kib() / 1024,
        "idle_cpu": idle,
        "inotify_per_node": [labtools.root_inotify_instances(labtools.node_processes(n.pid)) for n in nodes if n.pid],
        "inotify_limit": labtools.inotify_limit(),
    }


def startup_seconds(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


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
    report.plot(results, out / "results.png")
    print(text)
    progress(f"wrote {out / 'RESULTS.md'}, {out / 'results.png'}, {out / 'results.json'}")


def lab_is_up(name: str) -> bool:
    try:
        LabState.load(name)
    except LabError:
        return False
    return True


def only_large(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The large-image phase alone (no lab: its upstream is a loopback registry of its own), put into the
    results.json already in --out, whose other phases keep their own run and date."""
    previous = args.out / "results.json"
    results: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    workdir = Path(tempfile.mkdtemp(prefix="podinfra-bench-"))
    try:
        large = bench_large(args.large_runs, args.large_scale, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    large["meta"]["command"] = " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        write(json.loads(args.render.read_text()), args.out)
        return 0
    if args.only == "large":
        return only_large(args, argv)
    if os.geteuid() != 0:
        print("benchmarks/run.py needs root (the lab does)", file=sys.stderr)
        return 2
    wanted = max(args.nodes) + 1
    if not lab_is_up(args.lab):
        if labtools.mem_available_kib() // 1024 < wanted * MIB_PER_NODE_GUARD + 2048:
            print(f"not enough memory for a {wanted}-host lab: choose smaller --nodes", file=sys.stderr)
            return 2
        need = labtools.root_inotify_instances() + wanted * INOTIFY_PER_HOST + INOTIFY_HEADROOM
        # `lab up` raises the limit itself (podinfra.lab.lifecycle.INOTIFY) before it boots anything.
        if need > max(labtools.inotify_limit(), lifecycle.INOTIFY["max_user_instances"]):
            print(
                f"a {wanted}-host lab would take root's inotify instances to about {need}, over "
                f"fs.inotify.max_user_instances = {labtools.inotify_limit()} (nodes then hang at boot): choose "
                "smaller --nodes, or raise the limit (sysctl fs.inotify.max_user_instances=512)",
                file=sys.stderr,
            )
            return 2
    started = time.monotonic()
    lab = labtools.ensure_lab(args.lab, max(args.nodes), args.subnet, args.upstream_port)
    workdir = Path(tempfile.mkdtemp(prefix="podinfra-bench-"))
    try:
        results: dict[str, Any] = {
            "meta": {
                "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{os.cpu_count()} cores, "
                f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024**2:.0f} GiB, Linux {platform.release()}",
                "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
                "cores": os.cpu_count(),
                "runs": args.runs,
                "versions": versions(lab),
                "minors": list(mirrorbench.MINORS),
                "tags": mirrorbench.tags(),
            }
        }
        results["mirror"] = bench_mirror(lab, args.runs, workdir)
        results["mirror_large"] = bench_large(args.large_runs, args.large_scale, workdir)
        results["mirror_large"]["meta"]["command"] = results["meta"]["command"]
        results["nodes"], differences = bench_nodes(lab, args.nodes, args.runs, workdir)
        check_sizes = [size for size in (1, 3, 10) if size <= len(lab.nodes)]
        if args.quick:
            results["check"] = {"available": False, "note": "skipped with --quick.", "sizes": {}}
        elif not check_available():
            note = "`podinfra check --help` fails: the command does not exist in this checkout."
            results["check"] = {"available": False, "note": note, "sizes": {}}
        else:
            results["check"] = {"available": True, "sizes": bench_check(lab, check_sizes, args.runs, workdir)}
        results["scale"] = measure_scale(lab, sample_cpu=not args.quick)
        samples = 1 if args.quick else 5
        startups = {
            "podinfra versions": startup_seconds([PODINFRA, "versions"], samples),
            "pyinfra --version": startup_seconds([PYINFRA, "--version"], samples),
            "ansible-playbook --version": startup_seconds([nodebench.ANSIBLE_PLAYBOOK, "--version"], samples),
            "skopeo --version": startup_seconds(["skopeo", "--version"], samples),
            "python -c pass": startup_seconds([sys.executable, "-c", "pass"], samples),
        }
        results["meta"]["startups"] = startups
        results["equivalence"] = differences
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if lab.brought_up and not args.keep_lab:
            labtools.lab_down(lab.name)
    results["meta"]["seconds"] = round(time.monotonic() - started)
    write(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
