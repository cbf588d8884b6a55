"""Cost per node at fleet size: at each of --fleet-sizes nodes (10, 50, 100, 200), the node deploy cold and its
no-change re-run, by pyinfra (deploys/node.py) and by the Ansible playbook with its forks raised to the fleet's
size, the cold deploy again with a fleet's restart batch (`restart_batch: "10%"`), and the checks, by
`podinfra check` and by the same suite under pytest-xdist: wall seconds, control-host CPU (the command and
everything it started, ssh's detached masters included: checkbench.children_cpu) and the control host's peak
memory (RSS and PSS summed over the same processes, sampled every 0.5 s). One run per size, and three checks in
a row at the largest: a fleet run loads the whole machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import checkbench
import labtools
import nodebench
from labtools import Lab

SHARE = "10%"  # the restart batch docs/fleet.md advises for a fleet
XDIST_WORKERS = 50  # -n past this would need about 110 MiB per worker: 22 GB at 200 nodes, more than this machine
CHECKS_AT_LARGEST = 3
RERUN_SPEEDUP = 5  # issue 23's goals, at the largest size
PER_NODE_GROWTH = 1.25
_PASSED = re.compile(r"^(\d+)/(\d+) nodes pass")


def _tree_memory_kib(root: int) -> tuple[int, int]:
    """RSS and PSS summed over `root`'s descendants (not `root` itself). PSS splits a page shared by forked
    processes between them, so its sum is what they hold together; RSS counts it once per process."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, StopIteration):
            status = proc.joinpath("status").read_text().splitlines()
            ppid = next(line for line in status if line.startswith("PPid:")).split()[1]
            children.setdefault(int(ppid), []).append(int(proc.name))
    rss = pss = 0
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    kib = int(value.split()[0])
                    rss, pss = (rss + kib, pss) if key == "Rss" else (rss, pss + kib)
    return rss, pss


@contextlib.contextmanager
def peak_memory() -> Iterator[dict[str, float]]:
    """The peaks, in MiB, of the summed RSS and PSS of the processes started inside the block, in the dict it
    yields (filled once the block is done)."""
    found: dict[str, float] = {}
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak[:] = [max(p, now) for p, now in zip(peak, _tree_memory_kib(os.getpid()), strict=True)]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()
        found.update(rss_mib=round(peak[0] / 1024, 1), pss_mib=round(peak[1] / 1024, 1))


def _deploy(
    tool: str, lab: Lab, names: list[str], inventory: Path, cold: bool, batch: str | None = None
) -> dict[str, Any]:
    """One apply, measured; a cold apply must change something, a re-run nothing."""
    with peak_memory() as memory, checkbench.children_cpu() as cpu:
        outcome = nodebench.apply(tool, lab, names, inventory, batch)
    if (outcome.changed == 0) if cold else outcome.changed:
        raise RuntimeError(f"{tool} on {len(names)} nodes changed {outcome.changed} ({'cold' if cold else 're-run'})")
    return {"seconds": round(outcome.seconds, 2), "cpu": round(cpu[0], 2), **memory, "changed": outcome.changed}


def _check(tool: str, lab: Lab, names: list[str], workdir: Path) -> dict[str, Any]:
    with peak_memory() as memory:
        seconds, outcome, cpu = checkbench.once(tool, lab, names, workdir, min(len(names), XDIST_WORKERS))
    return {"seconds": round(seconds, 2), "cpu": round(cpu["control"], 2), **memory, "outcome": outcome}


def bench_fleet(
    lab: Lab, sizes: list[int], workdir: Path, save: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Every size's rows; `save` gets the results after each size, so a run stopped at 200 keeps the rest."""
    inventory = nodebench.ansible_inventory(lab, workdir)
    data: dict[str, Any] = {
        "meta": {**labtools.stamp(), "sizes": sizes, "share": SHARE, "xdist_workers": XDIST_WORKERS,
                 "checks_at_largest": CHECKS_AT_LARGEST, "containerd": ",".join(lab.state.config.runtimes)},
    }  # fmt: skip
    for size in sizes:
        names = [n.name for n in lab.nodes[:size]]
        row: dict[str, Any] = {}
        os.environ["ANSIBLE_FORKS"] = str(size)  # Ansible's forks raised to the fleet (pyinfra runs all at once)
        try:
            for tool in nodebench.TOOLS:
                labtools.progress(f"fleet {size}: {tool}: reset, cold apply, re-run")
                labtools.reset(lab, names)
                row[tool] = {"cold": _deploy(tool, lab, names, inventory, True)}
                row[tool]["rerun"] = _deploy(tool, lab, names, inventory, False)
        finally:
            os.environ.pop("ANSIBLE_FORKS", None)
        # Last, so the checks find the nodes as podinfra leaves them.
        labtools.progress(f"fleet {size}: podinfra: reset, cold apply with restart_batch {SHARE}")
        labtools.reset(lab, names)
        row["podinfra_share"] = {"cold": _deploy("podinfra", lab, names, inventory, True, SHARE)}
        runs = CHECKS_AT_LARGEST if size == max(sizes) else 1
        row["check_podinfra"] = []
        for n in range(runs):
            labtools.progress(f"fleet {size}: check by podinfra ({n + 1} of {runs})")
            row["check_podinfra"].append(_check("podinfra", lab, names, workdir))
        labtools.progress(f"fleet {size}: check by pytest-xdist (-n {min(size, XDIST_WORKERS)})")
        row["check_xdist"] = [_check("xdist", lab, names, workdir)]
        data[str(size)] = row
        if save:
            save(data)
    return data


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _entries(row: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    entries = [("deploy cold", t, [row[t]["cold"]]) for t in nodebench.TOOLS]
    entries.append((f'deploy cold, restart_batch "{SHARE}"', "podinfra", [row["podinfra_share"]["cold"]]))
    entries += [("deploy re-run", t, [row[t]["rerun"]]) for t in nodebench.TOOLS]
    return entries + [("check", t, row[f"check_{t}"]) for t in checkbench.TOOLS]


def table(fleet: dict[str, Any]) -> str:
    rows = [
        "| nodes | what | tool | wall s | s per node | control CPU s per node | peak RSS MiB (sum) | peak PSS MiB "
        "| outcome |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in measured_sizes(fleet):
        for what, tool, runs in _entries(fleet[str(size)]):
            seconds = median(runs, "seconds")
            outcome = (
                " / ".join(r["outcome"] for r in runs) if "outcome" in runs[0] else f"{runs[0]['changed']} changed"
            )
            of = f" (median of {len(runs)})" if len(runs) > 1 else ""
            rows.append(
                f"| {size} | {what} | {tool} | {seconds:.1f}{of} "
                f"| {seconds / size:.2f} | {median(runs, 'cpu') / size:.2f} | {max(r['rss_mib'] for r in runs):.0f} "
                f"| {max(r['pss_mib'] for r in runs):.0f} | {outcome} |"
            )
    return "\n".join(rows)


def measured_sizes(fleet: dict[str, Any]) -> list[int]:
    return [s for s in fleet["meta"]["sizes"] if str(s) in fleet]


def no_fail(outcome: str) -> bool:
    passed = _PASSED.match(outcome)
    return passed is not None and passed[1] == passed[2] and "FAIL" not in outcome


def targets(fleet: dict[str, Any]) -> list[str]:
    """Issue 23's goals, each met or not, from the largest size measured and 50 nodes."""
    sizes = measured_sizes(fleet)
    if not sizes:
        return ["- fleet: not measured"]
    top = max(sizes)
    row = fleet[str(top)]
    lines = []
    speedup = row["ansible"]["rerun"]["seconds"] / row["podinfra"]["rerun"]["seconds"]
    lines.append(
        f"- fleet: podinfra >= {RERUN_SPEEDUP}x faster than Ansible on the no-change re-run at {top} nodes: "
        f"**{_verdict(speedup >= RERUN_SPEEDUP)}** ({speedup:.1f}x)"
    )
    if 50 in sizes and top > 50:
        for what, (low, high) in per_node_growth(fleet, 50, top).items():
            growth = high / low
            lines.append(
                f"- fleet: podinfra's seconds per node for the {what} at {top} nodes within {PER_NODE_GROWTH}x of "
                f"at 50: **{_verdict(growth <= PER_NODE_GROWTH)}** ({high:.2f} s against {low:.2f} s: {growth:.2f}x)"
            )
    checks = [r["outcome"] for r in row["check_podinfra"]]
    clean = all(no_fail(o) for o in checks)
    lines.append(
        f"- fleet: {CHECKS_AT_LARGEST} `podinfra check` runs in a row at {top} nodes with no FAIL: "
        f"**{_verdict(clean and len(checks) >= CHECKS_AT_LARGEST)}** ({len(checks)} run(s): {'; '.join(checks)})"
    )
    share, whole = row["podinfra_share"]["cold"]["seconds"], row["podinfra"]["cold"]["seconds"]
    lines.append(
        f'- fleet: cold deploy at {top} nodes with restart_batch "{SHARE}": {share:.1f} s '
        f"({share / top:.2f} s per node; every node at once: {whole:.1f} s)"
    )
    return lines


def per_node_growth(fleet: dict[str, Any], low: int, high: int) -> dict[str, tuple[float, float]]:
    """podinfra's seconds per node at `low` and at `high` nodes, for the re-run and for the check (median)."""

    def runs(what: str, size: int) -> list[dict[str, Any]]:
        row = fleet[str(size)]
        return [row["podinfra"]["rerun"]] if what == "re-run" else list(row["check_podinfra"])

    return {
        what: (median(runs(what, low), "seconds") / low, median(runs(what, high), "seconds") / high)
        for what in ("re-run", "check")
    }


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


def plot(fleet: dict[str, Any], path: Path) -> None:
    """Seconds per node against nodes, for the deploys and the checks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = measured_sizes(fleet)
    fig, ax = plt.subplots(figsize=(8, 5))
    for what, tool, _ in _entries(fleet[str(sizes[0])]):
        series = [median(next(r for w, t, r in _entries(fleet[str(s)]) if (w, t) == (what, tool)), "seconds") / s
                  for s in sizes]  # fmt: skip
        ax.plot(sizes, series, marker="s" if what == "check" else "o",
                linestyle="--" if what == "check" else "-", label=f"{what}, {tool}")  # fmt: skip
    ax.set_xlabel("nodes")
    ax.set_ylabel("seconds per node")
    ax.set_title("Cost per node at fleet size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
