"""The benchmark's phases, each returning its part of results.json: node configuration, mirror, mirror at
size, `podinfra check` against pytest-xdist, and what a lab node costs."""

from __future__ import annotations

import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import checkbench
import labtools
import largeset
import mirrorbench
import nodebench
from labtools import Lab, progress, run

from podinfra.images.registry import RegistryClient


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
    crane = largeset.crane_binary()
    tools = [tool for tool in largeset.LARGE_TOOLS if tool != "crane" or crane]
    copy: dict[str, Any] = {tool: {"cold": [], "recopy": [], "rss_cold": [], "rss_recopy": []} for tool in tools}
    archive: dict[str, Any] = {
        tool: {"export": [], "import": [], "rss_export": [], "rss_import": [], "bytes": 0}
        for tool in largeset.ARCHIVE_TOOLS
    }
    in_process: dict[str, list[float]] = {"cold": [], "recopy": []}
    with mirrorbench.fresh_registry(largeset.MEMORY) as upstream:
        progress(f"large set: building {largeset.large_bytes(scale) / 1e9:.2f} GB of layers in {upstream}")
        started = time.perf_counter()
        published = largeset.build_large(RegistryClient(f"http://{upstream}"), scale)
        built = time.perf_counter() - started
        for i in range(runs):
            for tool in tools:
                progress(f"large run {i + 1}/{runs}: {tool} cold copy and re-copy")
                cold, again, _, _ = largeset.large_pair(tool, upstream, published, workdir, crane)
                copy[tool]["cold"].append(cold.seconds)
                copy[tool]["recopy"].append(again.seconds)
                copy[tool]["rss_cold"].append(cold.rss_mib)
                copy[tool]["rss_recopy"].append(again.rss_mib)
            progress(f"large run {i + 1}/{runs}: podinfra in-process cold copy and re-copy")
            seconds = largeset.in_process_large(upstream, published)
            in_process["cold"].append(seconds[0])
            in_process["recopy"].append(seconds[1])
            for tool in largeset.ARCHIVE_TOOLS:
                progress(f"large run {i + 1}/{runs}: {tool} export and import")
                exported, imported, size = largeset.archive_round(tool, upstream, published, workdir)
                archive[tool]["export"].append(exported.seconds)
                archive[tool]["import"].append(imported.seconds)
                archive[tool]["rss_export"].append(exported.rss_mib)
                archive[tool]["rss_import"].append(imported.rss_mib)
                archive[tool]["bytes"] = size
        for tool in tools:
            progress(f"large set: {tool} once more through the counting proxy")
            _, _, cold_counts, again_counts = largeset.large_pair(
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
            **labtools.stamp(),
            "runs": runs,
            "scale": scale,
            "bytes": largeset.large_bytes(scale),
            "images": {repo: [round(mib * scale, 3) for mib in sizes] for repo, sizes in largeset.LARGE_IMAGES.items()},
            "platforms": [largeset.platform_text(p) for p in largeset.LARGE_PLATFORMS],
            "build_seconds": built,
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


def bench_check(lab: Lab, runs: int, workdir: Path, command: str) -> dict[str, Any]:
    """`podinfra check` and pytest-xdist on 1, 3 and 10 nodes (those the lab has), after deploys/node.py."""
    reason = checkbench.available()
    if reason:
        return {"available": False, "note": reason}
    names = [n.name for n in lab.nodes]
    progress(f"check: configuring {len(names)} node(s) with deploys/node.py first")
    nodebench.apply("podinfra", lab, names, workdir / "unused")
    started = time.monotonic()
    sizes = [size for size in (1, 3, 10) if size <= len(names)]
    data = checkbench.bench(lab, names, sizes, runs, workdir)
    meta = {
        "command": command,
        **labtools.stamp(),
        "runs": runs,
        "labs": labtools.labs_up(),
        "versions": ", ".join(
            f"{name} {metadata.version(name)}" for name in ("pytest", "pytest-xdist", "pytest-testinfra")
        ),
        "seconds": round(time.monotonic() - started),
    }
    return {"available": True, "meta": meta, **data}


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
