"""results.png: the figures of RESULTS.md as plots (matplotlib, imported only when a plot is drawn)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from figures import CHECK_CPU_TARGET, CHECK_LABELS, NODE_LABELS, RSS_TARGET_MIB, Results


def spread(samples: list[list[float]]) -> tuple[list[float], list[list[float]]]:
    """Medians, and matplotlib's yerr (distances down to the min and up to the max) for each series."""
    medians = [statistics.median(values) for values in samples]
    below = [m - min(values) for m, values in zip(medians, samples, strict=True)]
    above = [max(values) - m for m, values in zip(medians, samples, strict=True)]
    return medians, [below, above]


COLOURS = {"podinfra": "tab:blue", "ansible": "tab:orange", "skopeo": "tab:green", "xdist": "tab:red"}


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    large = results.get("mirror_large")
    fig, axes = plt.subplots(4 if large else 3, 2, figsize=(11, 16 if large else 12))
    nodes_lines(results["nodes"], axes[0], results["meta"]["containerd"])
    if "fleet21" in results:
        fleet21_bars(results["fleet21"]["nodes"], axes[1][0])
    else:
        blank(axes[1][0], "containerd 2.1 fleet: not measured")
    mirror_bars(results["mirror"], axes[1][1])
    if results["check"]["available"]:
        check_lines(results["check"], axes[2][0], axes[2][1])
    else:
        blank(axes[2][0], "podinfra check: not measured")
        axes[2][1].axis("off")
    if large:
        plot_large(large, axes[3][0], axes[3][1])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def blank(ax: Any, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")


def nodes_lines(nodes: Results, axes: Any, containerd: str) -> None:
    sizes = [int(size) for size in nodes]
    for ax, phase, title in ((axes[0], "cold", "cold apply"), (axes[1], "rerun", "no-change re-run")):
        for tool, label in NODE_LABELS.items():
            medians, errors = spread([nodes[str(s)][tool][phase] for s in sizes])
            ax.errorbar(sizes, medians, yerr=errors, marker="o", capsize=3, label=label, color=COLOURS[tool])
        ax.set(title=f"Node configuration ({containerd} fleet): {title}", xlabel="nodes", ylabel="wall time (s)")
        ax.set_xticks(sizes)
        ax.set_ylim(bottom=0)
        ax.legend()


def fleet21_bars(nodes: Results, ax: Any) -> None:
    size = max(nodes, key=int)
    for i, (tool, label) in enumerate(NODE_LABELS.items()):
        offset = (i - 0.5) * 0.4
        medians, errors = spread([nodes[size][tool]["cold"], nodes[size][tool]["rerun"]])
        ax.bar([offset, 1 + offset], medians, width=0.4, yerr=errors, capsize=3, label=label, color=COLOURS[tool])
    ax.set(title=f"Node configuration (2.1 fleet), {size} node(s)", ylabel="wall time (s)", xticks=[0, 1])
    ax.set_xticklabels(["cold apply", "no-change re-run"])
    ax.legend()


def mirror_bars(mirror: Results, ax: Any) -> None:
    bars = [("podinfra", "podinfra mirror", COLOURS["podinfra"]), ("skopeo", "skopeo sync", COLOURS["skopeo"])]
    if mirror.get("in_process", {}).get("cold"):
        bars.insert(1, ("in_process", "podinfra, in-process", "lightsteelblue"))
    width = 0.8 / len(bars)
    for i, (tool, label, colour) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * width
        medians, errors = spread([mirror[tool]["cold"], mirror[tool]["recopy"]])
        ax.bar([offset, 1 + offset], medians, width=width, yerr=errors, capsize=3, label=label, color=colour)
    ax.set(title="Mirror: pause set, all platforms", ylabel="wall time (s)", xticks=[0, 1])
    ax.set_xticklabels(["cold copy", "re-copy"])
    ax.legend()


def check_lines(check: Results, wall: Any, cpu: Any) -> None:
    sizes = [int(size) for size in check["podinfra"]]
    for ax, key, title in ((wall, "seconds", "wall time"), (cpu, "control_cpu", "control-host CPU")):
        for tool, label in CHECK_LABELS.items():
            medians, errors = spread([check[tool][str(s)][key] for s in sizes])
            ax.errorbar(sizes, medians, yerr=errors, marker="o", capsize=3, label=label, color=COLOURS[tool])
        ax.set(title=f"Checking nodes: {title}", xlabel="nodes", ylabel="seconds", xticks=sizes)
        ax.set_ylim(bottom=0)
    one = statistics.median(check["podinfra"][str(sizes[0])]["control_cpu"])
    target = [one + CHECK_CPU_TARGET * (s - sizes[0]) for s in sizes]
    cpu.plot(sizes, target, color="grey", linestyle="--", linewidth=1, label=f"target {CHECK_CPU_TARGET} s/node")
    wall.legend()
    cpu.legend()


def plot_large(large: Results, times: Any, memory: Any) -> None:
    colours = {"podinfra": "tab:blue", "skopeo": "tab:green", "crane": "tab:red"}
    phases = [("cold", "cold copy"), ("recopy", "re-copy")]
    tools = list(large["copy"])
    width = 0.8 / len(tools)
    for i, tool in enumerate(tools):
        offset = (i - (len(tools) - 1) / 2) * width
        series = [large["copy"][tool][key] for key, _ in phases]
        xs = [n + offset for n in range(len(phases))]
        if tool in large["archive"]:
            series.append([e + m for e, m in zip(large["archive"][tool]["export"], large["archive"][tool]["import"],
                                                 strict=True)])  # fmt: skip
            xs.append(len(phases) + offset)
        medians, errors = spread(series)
        times.bar(xs, medians, width=width, yerr=errors, capsize=3, label=tool, color=colours[tool])
    times.set(title=f"Mirror at size: {large['meta']['bytes'] / 1e9:.2f} GB, 2 platforms", ylabel="wall time (s)")
    times.set_xticks(range(len(phases) + 1))
    times.set_xticklabels([label for _, label in phases] + ["export + import"])
    times.legend()
    keys = [("rss_cold", "cold copy"), ("rss_recopy", "re-copy")]
    for i, tool in enumerate(tools):
        offset = (i - (len(tools) - 1) / 2) * width
        series = [large["copy"][tool][key] for key, _ in keys]
        xs = [n + offset for n in range(len(keys))]
        if tool in large["archive"]:
            series += [large["archive"][tool]["rss_export"], large["archive"][tool]["rss_import"]]
            xs += [len(keys) + offset, len(keys) + 1 + offset]
        medians, errors = spread(series)
        memory.bar(xs, medians, width=width, yerr=errors, capsize=3, label=tool, color=colours[tool])
    memory.axhline(RSS_TARGET_MIB, color="grey", linestyle="--", linewidth=1, label=f"target {RSS_TARGET_MIB} MiB")
    memory.set(title="Mirror at size: peak RSS", ylabel="MiB")
    memory.set_xticks(range(len(keys) + 2))
    memory.set_xticklabels([label for _, label in keys] + ["export", "import"])
    memory.legend()
