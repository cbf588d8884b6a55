"""The tables of RESULTS.md, and the figures, labels and targets they and the plot share."""

from __future__ import annotations

import statistics
from typing import Any

Results = dict[str, Any]


def stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def cell(values: list[float], unit: str = "s") -> str:
    if not values:
        return "-"
    median, low, high = stats(values)
    if len(values) == 1:
        return f"{median:.2f} {unit}"
    return f"{median:.2f} {unit} ({low:.2f}-{high:.2f})"


def ratio(ours: list[float], theirs: list[float], words: tuple[str, str] = ("faster", "slower")) -> str:
    """podinfra / other, by medians, with the speed-up it means (or, for CPU, ("less", "more"))."""
    a, b = statistics.median(ours), statistics.median(theirs)
    return f"{a / b:.2f} ({b / a:.1f}x {words[0]})" if a <= b else f"{a / b:.2f} ({a / b:.1f}x {words[1]})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def node_table(nodes: Results) -> str:
    rows = []
    for size, tools in nodes.items():
        p, a = tools["podinfra"], tools["ansible"]
        rows.append(
            [
                size,
                cell(p["cold"]),
                cell(a["cold"]),
                ratio(p["cold"], a["cold"]),
                cell(p["rerun"]),
                cell(a["rerun"]),
                ratio(p["rerun"], a["rerun"]),
            ]
        )
    header = ["nodes", "podinfra cold", "Ansible cold", "ratio cold", "podinfra re-run", "Ansible re-run"]
    return table([*header, "ratio re-run"], rows)


def fleet21_table(fleet: Results) -> str:
    return node_table(fleet["nodes"])


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value:,} B" if value < 10_000 else f"{value / 1e6:.3f} MB"


def mirror_table(results: Results) -> str:
    mirror = results["mirror"]
    rows = []
    for tool, label in (("podinfra", "podinfra mirror"), ("skopeo", "skopeo sync --all")):
        data = mirror[tool]
        rows.append(
            [
                label,
                cell(data["cold"]),
                cell(data["recopy"]),
                human_bytes(data["sent_cold"]),
                human_bytes(data["sent_recopy"]),
                f"{data['requests_cold']} / {data['requests_recopy']}",
            ]
        )
    p, s = mirror["podinfra"], mirror["skopeo"]
    rows.append(["ratio podinfra/skopeo", ratio(p["cold"], s["cold"]), ratio(p["recopy"], s["recopy"]), "", "", ""])
    if mirror.get("in_process", {}).get("cold"):
        i = mirror["in_process"]
        rows.append(["podinfra mirror, in-process (no start-up)", cell(i["cold"]), cell(i["recopy"]), "", "", ""])
        rows.append(
            ["ratio in-process/skopeo", ratio(i["cold"], s["cold"]), ratio(i["recopy"], s["recopy"]), "", "", ""]
        )
    header = ["tool", "cold copy", "re-copy", "bytes sent, cold", "bytes sent, re-copy", "HTTP requests cold / re"]
    return table(header, rows)


CHECK_LABELS = {"podinfra": "podinfra check", "xdist": "pytest -n N"}
NODE_LABELS = {"podinfra": "podinfra (pyinfra)", "ansible": "Ansible"}
CPU_WORDS = ("less", "more")


def nodes_cpu(data: Results) -> list[float]:
    """The rest of the machine's CPU over each run: the nodes' own work."""
    return [m - c for m, c in zip(data["machine_cpu"], data["control_cpu"], strict=True)]


def per_added_node(check: Results, tool: str) -> float | None:
    """Control-host CPU per added node: (median CPU at 10 nodes - median at 1) / 9."""
    sizes = check[tool]
    if not {"1", "10"} <= set(sizes):
        return None
    ten: float = statistics.median(sizes["10"]["control_cpu"])
    one: float = statistics.median(sizes["1"]["control_cpu"])
    return (ten - one) / 9


def check_table(results: Results) -> str:
    check = results["check"]
    if not check["available"]:
        return f"Not available: {check['note']}"
    rows = []
    for size in check["podinfra"]:
        p, x = check["podinfra"][size], check["xdist"][size]
        rows.append(
            [size, cell(p["seconds"]), cell(x["seconds"]), ratio(p["seconds"], x["seconds"]), cell(p["control_cpu"]),
             cell(x["control_cpu"]), ratio(p["control_cpu"], x["control_cpu"], CPU_WORDS), cell(nodes_cpu(p)),
             cell(nodes_cpu(x)),
             f"{p['outcome']} / {x['outcome']}"]
        )  # fmt: skip
    p, x = (per_added_node(check, tool) for tool in CHECK_LABELS)
    if p is not None and x is not None:
        rows.append(["CPU per added node (10 vs 1)", "", "", "", f"{p:.2f} s", f"{x:.2f} s",
                     ratio([p], [x], CPU_WORDS), "", "", ""])  # fmt: skip
    header = ["nodes", "podinfra check (wall)", "pytest -n N (wall)", "ratio wall", "CPU of podinfra check",
              "CPU of pytest -n N", "ratio CPU", "CPU of the nodes, podinfra check runs",
              "CPU of the nodes, pytest -n N runs", "outcome, last run (podinfra check / pytest -n N)"]  # fmt: skip
    return table(header, rows)


def scale_table(results: Results) -> str:
    scale = results["scale"]
    rows = [
        ["nodes in the lab (plus the registry node)", str(scale["lab_nodes"])],
        ["PSS per node, inside its PID namespace", cell(scale["node_pss_mib"], "MiB")],
        ["PSS of the registry node", f"{scale['registry_pss_mib']:.0f} MiB"],
    ]
    if scale.get("lab_up_delta_mib") is not None:
        rows.append(
            [
                "MemAvailable drop on `lab up`, per host booted",
                f"{scale['lab_up_delta_mib'] / (scale['lab_nodes'] + 1):.0f} MiB "
                f"({scale['lab_up_delta_mib']:.0f} MiB for {scale['lab_nodes'] + 1} hosts)",
            ]
        )
    if scale.get("idle_cpu"):
        rows.append(["CPU per idle node (% of one core)", cell([v * 100 for v in scale["idle_cpu"]], "%")])
    if scale.get("inotify_per_node"):
        counts = scale["inotify_per_node"]
        median = statistics.median(counts)
        rows.append(["root's inotify instances per node", f"{median:g} ({min(counts)}-{max(counts)})"])
    rows.append(["MemTotal / MemAvailable now", f"{scale['mem_total_mib']:.0f} / {scale['mem_available_mib']:.0f} MiB"])
    rows.append(["nodes the machine holds (estimate)", capacity(scale)])
    return table(["what", "measured"], rows)


RERUN_TARGET = 3  # podinfra's no-change re-run at 10 nodes at least this many times faster than Ansible's
CHECK_CPU_TARGET = 0.25  # seconds of podinfra check's control-host CPU per added node, at most (issue 16)


def capacity(scale: dict[str, Any]) -> str:
    """How many nodes the machine holds, and what binds first: memory (the larger of PSS and the MemAvailable
    drop per host) or root's inotify instances (shared by every lab on the machine)."""
    delta = scale.get("lab_up_delta_mib")
    per_node = max(statistics.median(scale["node_pss_mib"]), (delta or 0) / (scale["lab_nodes"] + 1))
    per_host = max(scale["inotify_per_node"])
    bounds = {
        f"memory ({per_node:.0f} MiB per node, MemTotal less 2 GiB for the host, tools and registries)": int(
            (scale["mem_total_mib"] - 2048) / per_node
        ),
        f"root's inotify instances ({per_host} per node, fs.inotify.max_user_instances = {scale['inotify_limit']}, "
        "all labs together)": scale["inotify_limit"] // per_host,
    }
    binding = min(bounds, key=lambda k: bounds[k])
    others = "; ".join(f"{name}: {count}" for name, count in bounds.items() if name != binding)
    return (
        f"**about {bounds[binding]} idle nodes**, bound by {binding}; {others}; one lab (a /24) holds at most 244. "
        "Busy nodes are bound by the 2 cores long before that (see the CPU columns of `podinfra check`)"
    )


LARGE_LABELS = {"podinfra": "podinfra mirror", "skopeo": "skopeo sync --all", "crane": "crane copy"}
RSS_TARGET_MIB = 100


def mib(values: list[float]) -> str:
    return cell(values, "MiB").replace(".00 MiB", " MiB")


def large_title(large: Results) -> str:
    meta = large["meta"]
    sizes = sorted({size for sizes in meta["images"].values() for size in sizes})
    return (
        f"## Mirror at size: {len(meta['images'])} images of {len(meta['platforms'])} platforms, layers of "
        f"{sizes[0]:g} to {sizes[-1]:g} MiB, {meta['bytes'] / 1e9:.2f} GB in all"
    )


def large_table(large: Results) -> str:
    copy = large["copy"]
    rows = []
    for tool, data in copy.items():
        rows.append(
            [
                LARGE_LABELS[tool],
                cell(data["cold"]),
                cell(data["recopy"]),
                mib(data["rss_cold"]),
                mib(data["rss_recopy"]),
                human_bytes(data.get("sent_cold")),
                human_bytes(data.get("sent_recopy")),
                f"{data.get('requests_cold')} / {data.get('requests_recopy')}",
            ]
        )
    p = copy["podinfra"]
    for other in (tool for tool in copy if tool != "podinfra"):
        o = copy[other]
        rows.append(
            [
                f"ratio podinfra/{other}",
                ratio(p["cold"], o["cold"]),
                ratio(p["recopy"], o["recopy"]),
                "",
                "",
                "",
                "",
                "",
            ]
        )
    in_process = large.get("in_process", {})
    if in_process.get("cold"):
        rows.append(["podinfra mirror, in-process (no start-up)", cell(in_process["cold"]), cell(in_process["recopy"]),
                     "", "", "", "", ""])  # fmt: skip
    header = ["tool", "cold copy", "re-copy", "peak RSS, cold", "peak RSS, re-copy", "bytes sent, cold",
              "bytes sent, re-copy", "HTTP requests cold / re"]  # fmt: skip
    return table(header, rows)


def archive_table(large: Results) -> str:
    rows = []
    labels = {"podinfra": "podinfra export / import", "skopeo": "skopeo copy to / from oci-archive"}
    for tool, data in large["archive"].items():
        total = [e + i for e, i in zip(data["export"], data["import"], strict=True)]
        rows.append(
            [labels[tool], cell(data["export"]), cell(data["import"]), cell(total), mib(data["rss_export"]),
             mib(data["rss_import"]), human_bytes(data["bytes"])]
        )  # fmt: skip
    p, s = large["archive"]["podinfra"], large["archive"]["skopeo"]
    rows.append(
        ["ratio podinfra/skopeo", ratio(p["export"], s["export"]), ratio(p["import"], s["import"]),
         ratio([a + b for a, b in zip(p["export"], p["import"], strict=True)],
               [a + b for a, b in zip(s["export"], s["import"], strict=True)]), "", "", ""]
    )  # fmt: skip
    header = ["tool", "export", "import", "export + import", "peak RSS, export", "peak RSS, import", "archive bytes"]
    return table(header, rows)
