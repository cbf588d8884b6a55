"""RESULTS.md, from the results dict that run.py collects (also kept as results.json): the targets met or not,
the tables (figures.py), and the notes on how each figure was made, worded in templates/*.md (Jinja2)."""

from __future__ import annotations

import statistics
from pathlib import Path

import fleetbench
import jinja2
import registrybench
from figures import (
    CHECK_CPU_TARGET,
    RERUN_TARGET,
    RSS_TARGET_MIB,
    Results,
    archive_table,
    check_table,
    fleet21_table,
    large_table,
    large_title,
    mirror_table,
    node_table,
    nodes_cpu,
    per_added_node,
    scale_table,
)


def rerun_target(nodes: Results, fleet: str) -> str:
    if "10" not in nodes:
        return f"- re-run at 10 nodes{fleet}: not measured in this run (no 10-node row)"
    p, a = nodes["10"]["podinfra"]["rerun"], nodes["10"]["ansible"]["rerun"]
    speedup = statistics.median(a) / statistics.median(p)
    return (
        f"- podinfra >= {RERUN_TARGET}x faster than Ansible on the no-change re-run at 10 nodes{fleet}: "
        f"**{verdict(speedup >= RERUN_TARGET)}** ({speedup:.1f}x)"
    )


def targets(results: Results) -> list[str]:
    lines = [rerun_target(results["nodes"], "")]
    if "fleet21" in results:
        lines.append(rerun_target(results["fleet21"]["nodes"], ", containerd 2.1 fleet"))
    p, s = results["mirror"]["podinfra"], results["mirror"]["skopeo"]
    cold = statistics.median(p["cold"]) / statistics.median(s["cold"])
    recopy = statistics.median(s["recopy"]) / statistics.median(p["recopy"])
    lines.append(
        f"- mirror cold copy no slower than skopeo: **{verdict(cold <= 1)}** (podinfra takes {cold:.2f}x skopeo's time)"
    )
    lines.append(f"- mirror re-copy at least 5x faster than skopeo: **{verdict(recopy >= 5)}** ({recopy:.2f}x)")
    if "mirror_large" in results:
        lines += large_targets(results["mirror_large"])
    if "registry_load" in results:
        lines.append(registrybench.target(results["registry_load"]))
    if "fleet" in results:
        lines += fleetbench.targets(results["fleet"])
    check = results["check"]
    added = per_added_node(check, "podinfra") if check["available"] else None
    if added is None:
        lines.append("- `podinfra check`: not measured in this run (1 and 10 nodes needed)")
        return lines
    one, ten = (statistics.median(check["podinfra"][k]["seconds"]) for k in ("1", "10"))
    lines.append(
        f"- `podinfra check` on 10 nodes within 2x of 1 node: **{verdict(ten <= 2 * one)}** ({ten / one:.2f}x)"
    )
    xdist = per_added_node(check, "xdist")
    lines.append(
        f"- `podinfra check`'s control-host CPU per added node at most {CHECK_CPU_TARGET} s: "
        f"**{verdict(added <= CHECK_CPU_TARGET)}** ({added:.2f} s; the same suite under pytest-xdist: {xdist:.2f} s)"
    )
    return lines


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def large_targets(large: Results) -> list[str]:
    copy = large["copy"]
    p = copy["podinfra"]
    others = {tool: statistics.median(copy[tool]["cold"]) for tool in copy if tool != "podinfra"}
    lines = []
    if others:
        fastest = min(others, key=lambda tool: others[tool])
        cold = statistics.median(p["cold"]) / others[fastest]
        lines.append(
            f"- large set, cold copy no slower than the faster of skopeo and crane ({fastest}, "
            f"{others[fastest]:.2f} s): **{verdict(cold <= 1)}** (podinfra takes {cold:.2f}x its time)"
            + ("" if "crane" in copy else "; crane could not be run, so skopeo alone")
        )
    if "skopeo" in copy:
        recopy = statistics.median(p["recopy"]) / statistics.median(copy["skopeo"]["recopy"])
        lines.append(
            f"- large set, re-copy no slower than skopeo: **{verdict(recopy <= 1)}** "
            f"(podinfra takes {recopy:.2f}x skopeo's time; see the in-process row for why)"
        )
    archive = large["archive"]["podinfra"]
    peaks = {"mirror": max(p["rss_cold"] + p["rss_recopy"]), "export": max(archive["rss_export"]),
             "import": max(archive["rss_import"])}  # fmt: skip
    largest = max(size for sizes in large["meta"]["images"].values() for size in sizes)
    lines.append(
        f"- peak RSS under {RSS_TARGET_MIB} MiB whatever the layer size (largest layer here {largest:g} MiB): "
        f"**{verdict(max(peaks.values()) < RSS_TARGET_MIB)}** (highest of every run: "
        + ", ".join(f"{name} {value:.0f} MiB" for name, value in peaks.items())
        + ")"
    )
    return lines


TEMPLATES = Path(__file__).resolve().parent / "templates"


def identical_sizes(differences: dict[str, list[str]]) -> list[str]:
    """The fleet sizes at which both tools left every node in the same state."""
    return [size for size, found in differences.items() if not found]


def environment() -> jinja2.Environment:
    """The templates of benchmarks/templates, with the filters they use (median, fmt) and the figures' helpers."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML
    )
    env.filters["median"] = statistics.median
    env.filters["fmt"] = format
    env.globals.update(identical_sizes=identical_sizes, per_added_node=per_added_node, nodes_cpu=nodes_cpu)
    return env


def _large_tables(large: Results) -> dict[str, str]:
    return {"large_title": large_title(large), "large": large_table(large), "archive": archive_table(large)}


def markdown(results: Results) -> str:
    tables = {
        "nodes": node_table(results["nodes"]),
        "mirror": mirror_table(results),
        "check": check_table(results),
        "scale": scale_table(results),
    }
    if "fleet21" in results:
        tables["fleet21"] = fleet21_table(results["fleet21"])
    if "registry_load" in results:
        tables["registry"] = registrybench.table(results["registry_load"])
    if "fleet" in results:
        tables["fleet"] = fleetbench.table(results["fleet"])
    large = results.get("mirror_large")
    if large:
        tables.update(_large_tables(large))
    template = environment().get_template("results.md")
    return template.render(results=results, meta=results["meta"], targets=targets(results), tables=tables, large=large)


def large_markdown(large: Results) -> str:
    """RESULTS.md for a run of the large phase alone."""
    template = environment().get_template("large-only.md")
    return template.render(large=large, targets=large_targets(large), tables=_large_tables(large))
