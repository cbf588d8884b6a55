"""Cost per node at fleet size: at each of --fleet-sizes nodes (10, 50, 100, 200), the node deploy cold and its
no-change re-run, by pyinfra (deploys/node.py) and by the Ansible playbook with its forks raised to the fleet's
size, and the checks, by `podinfra check` and by the same suite under pytest-xdist: wall seconds, control-host
CPU (the command and everything it started, ssh's detached masters included: checkbench.children_cpu) and the
control host's peak RSS (the sum over the same processes, sampled every 0.25 s). One run per size: a fleet
run loads the whole machine.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import checkbench
import labtools
import nodebench
from labtools import Lab

TOOLS = {"deploy": nodebench.TOOLS, "check": checkbench.TOOLS}


def _tree_rss_kib(root: int) -> int:
    """The summed RSS of `root`'s descendants (not `root` itself)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = {
                k: v.split()[0]
                for k, _, v in (line.partition(":") for line in proc.joinpath("status").read_text().splitlines())
                if k in ("PPid", "VmRSS")
            }
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields.get("PPid", "0")), []).append(int(proc.name))
        rss[int(proc.name)] = int(fields.get("VmRSS", "0"))
    total, todo = 0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


@contextlib.contextmanager
def peak_rss() -> Iterator[list[float]]:
    """The peak, in MiB, of the summed RSS of the processes started inside the block, in the list it yields
    once the block is done."""
    found: list[float] = []
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], _tree_rss_kib(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        done.set()
        sampler.join()
        found.append(round(peak[0] / 1024, 1))


def _measured(run: Callable[[], float]) -> dict[str, float]:
    with peak_rss() as rss, checkbench.children_cpu() as cpu:
        seconds = run()
    return {"seconds": round(seconds, 2), "cpu": round(cpu[0], 2), "rss_mib": rss[0]}


def _apply(tool: str, lab: Lab, names: list[str], inventory: Path, cold: bool) -> float:
    """One apply's seconds; a cold apply must change something, a re-run nothing."""
    outcome = nodebench.apply(tool, lab, names, inventory)
    if (outcome.changed == 0) if cold else outcome.changed:
        raise RuntimeError(f"{tool} on {len(names)} nodes changed {outcome.changed} ({'cold' if cold else 're-run'})")
    return outcome.seconds


def bench_fleet(lab: Lab, sizes: list[int], workdir: Path) -> dict[str, Any]:
    inventory = nodebench.ansible_inventory(lab, workdir)
    data: dict[str, Any] = {"meta": {**labtools.stamp(), "sizes": sizes}}
    for size in sizes:
        names = [n.name for n in lab.nodes[:size]]
        row: dict[str, Any] = {}
        os.environ["ANSIBLE_FORKS"] = str(size)  # Ansible's forks raised to the fleet (pyinfra runs all at once)
        try:
            for tool in nodebench.TOOLS:
                labtools.progress(f"fleet {size}: {tool}: reset, cold apply, re-run")
                labtools.reset(lab, names)
                cold = _measured(partial(_apply, tool, lab, names, inventory, True))
                rerun = _measured(partial(_apply, tool, lab, names, inventory, False))
                row[tool] = {"cold": cold, "rerun": rerun}
        finally:
            os.environ.pop("ANSIBLE_FORKS", None)
        labtools.progress(f"fleet {size}: deploys/node.py before the checks")
        nodebench.apply("podinfra", lab, names, inventory)
        for tool in checkbench.TOOLS:
            labtools.progress(f"fleet {size}: check by {tool}")
            with peak_rss() as rss:
                seconds, outcome, cpu = checkbench.once(tool, lab, names, workdir)
            row[f"check_{tool}"] = {"seconds": round(seconds, 2), "cpu": round(cpu["control"], 2),
                                    "rss_mib": rss[0], "outcome": outcome}  # fmt: skip
        data[str(size)] = row
    return data


def table(fleet: dict[str, Any]) -> str:
    rows = [
        "| nodes | what | tool | wall s | s per node | control CPU s per node | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in fleet["meta"]["sizes"]:
        row = fleet.get(str(size))
        if row is None:
            continue
        entries = [("deploy cold", t, row[t]["cold"]) for t in nodebench.TOOLS]
        entries += [("deploy re-run", t, row[t]["rerun"]) for t in nodebench.TOOLS]
        entries += [("check", t, row[f"check_{t}"]) for t in checkbench.TOOLS]
        for what, tool, m in entries:
            rows.append(
                f"| {size} | {what} | {tool} | {m['seconds']:.1f} | {m['seconds'] / size:.2f} | "
                f"{m['cpu'] / size:.2f} | {m['rss_mib']:.0f} |"
            )
    return "\n".join(rows)


def plot(fleet: dict[str, Any], path: Path) -> None:
    """Seconds per node against nodes, for the deploys and the checks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s for s in fleet["meta"]["sizes"] if str(s) in fleet]
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label in (("cold", "deploy cold"), ("rerun", "deploy re-run")):
        for tool in nodebench.TOOLS:
            ax.plot(sizes, [fleet[str(s)][tool][key]["seconds"] / s for s in sizes], marker="o",
                    label=f"{label}, {tool}")  # fmt: skip
    for tool in checkbench.TOOLS:
        ax.plot(sizes, [fleet[str(s)][f"check_{tool}"]["seconds"] / s for s in sizes], marker="s",
                linestyle="--", label=f"check, {tool}")  # fmt: skip
    ax.set_xlabel("nodes")
    ax.set_ylabel("seconds per node")
    ax.set_title("Cost per node at fleet size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
