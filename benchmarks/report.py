"""RESULTS.md tables and the PNG plot, from the results dict that run.py collects (also kept as results.json)."""

from __future__ import annotations

import statistics
from pathlib import Path
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


def ratio(ours: list[float], theirs: list[float]) -> str:
    """podinfra / other, by medians, with the speed-up it means."""
    a, b = statistics.median(ours), statistics.median(theirs)
    return f"{a / b:.2f} ({b / a:.1f}x faster)" if a <= b else f"{a / b:.2f} ({a / b:.1f}x slower)"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def node_table(results: Results) -> str:
    rows = []
    for size, tools in results["nodes"].items():
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
    header = ["tool", "cold copy", "re-copy", "bytes sent, cold", "bytes sent, re-copy", "HTTP requests cold / re"]
    return table(header, rows)


def check_table(results: Results) -> str:
    check = results["check"]
    if not check["available"]:
        return f"Not available: {check['note']}"
    rows = [[size, cell(data["seconds"]), data["outcome"]] for size, data in check["sizes"].items()]
    return table(["nodes", "podinfra check", "outcome (last run)"], rows)


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


def targets(results: Results) -> list[str]:
    lines = []
    nodes = results["nodes"]
    if "10" in nodes:
        p, a = nodes["10"]["podinfra"]["rerun"], nodes["10"]["ansible"]["rerun"]
        speedup = statistics.median(a) / statistics.median(p)
        lines.append(
            f"- podinfra >= 3x faster than Ansible on the no-change re-run at 10 nodes: **{verdict(speedup >= 3)}** "
            f"({speedup:.1f}x)"
        )
    else:
        lines.append("- re-run at 10 nodes: not measured in this run (no 10-node row)")
    p, s = results["mirror"]["podinfra"], results["mirror"]["skopeo"]
    cold = statistics.median(p["cold"]) / statistics.median(s["cold"])
    recopy = statistics.median(s["recopy"]) / statistics.median(p["recopy"])
    lines.append(
        f"- mirror cold copy no slower than skopeo: **{verdict(cold <= 1)}** (podinfra takes {cold:.2f}x skopeo's time)"
    )
    lines.append(f"- mirror re-copy at least 5x faster than skopeo: **{verdict(recopy >= 5)}** ({recopy:.2f}x)")
    check = results["check"]
    if check["available"] and "1" in check["sizes"] and "10" in check["sizes"]:
        one, ten = (statistics.median(check["sizes"][k]["seconds"]) for k in ("1", "10"))
        lines.append(
            f"- `podinfra check` on 10 nodes within 2x of 1 node: **{verdict(ten <= 2 * one)}** ({ten / one:.2f}x)"
        )
    else:
        lines.append("- `podinfra check` on 10 nodes within 2x of 1 node: not measured in this run")
    return lines


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def markdown(results: Results) -> str:
    meta = results["meta"]
    parts = [
        "# Benchmarks: podinfra next to Ansible and skopeo",
        f"Written by `{meta['command']}` on {meta['date']}. Machine: {meta['machine']}. "
        f"Each figure: median of {meta['runs']} run(s), (min-max) after it; the two tools ran in alternation "
        "(A B A B), so the machine's noise falls on both. The machine is shared with other engineers' labs: "
        f"load average at the start {meta['load']}.",
        f"Versions: {meta['versions']}.",
        "## Targets",
        "\n".join(targets(results)),
        "## Node configuration: `deploys/node.py` (pyinfra) and `benchmarks/ansible/node.yml` (ansible-core)",
        node_table(results),
        "\n".join(f"- {line}" for line in node_notes(results)),
        "## Mirror: pause for Kubernetes " + ", ".join(meta["minors"]) + f" ({', '.join(meta['tags'])}), all platforms",
        mirror_table(results),
        "\n".join(f"- {line}" for line in mirror_notes(results)),
        "## `podinfra check`",
        check_table(results),
        "\n".join(f"- {line}" for line in check_notes(results)),
        "## Lab scale",
        scale_table(results),
        "\n".join(f"- {line}" for line in scale_notes(results)),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def spread(samples: list[list[float]]) -> tuple[list[float], list[list[float]]]:
    """Medians, and matplotlib's yerr (distances down to the min and up to the max) for each series."""
    medians = [statistics.median(values) for values in samples]
    below = [m - min(values) for m, values in zip(medians, samples, strict=True)]
    above = [max(values) - m for m, values in zip(medians, samples, strict=True)]
    return medians, [below, above]


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    colours = {"podinfra": "tab:blue", "ansible": "tab:orange", "skopeo": "tab:green"}
    sizes = [int(size) for size in results["nodes"]]
    for ax, phase, title in ((axes[0][0], "cold", "cold apply"), (axes[0][1], "rerun", "no-change re-run")):
        for tool, label in (("podinfra", "podinfra (pyinfra)"), ("ansible", "Ansible")):
            medians, errors = spread([results["nodes"][str(s)][tool][phase] for s in sizes])
            ax.errorbar(sizes, medians, yerr=errors, marker="o", capsize=3, label=label, color=colours[tool])
        ax.set(title=f"Node configuration: {title}", xlabel="nodes", ylabel="wall time (s)", xticks=sizes)
        ax.set_ylim(bottom=0)
        ax.legend()
    ax = axes[1][0]
    mirror = results["mirror"]
    for offset, tool in ((-0.2, "podinfra"), (0.2, "skopeo")):
        medians, errors = spread([mirror[tool]["cold"], mirror[tool]["recopy"]])
        ax.bar([offset, 1 + offset], medians, width=0.4, yerr=errors, capsize=3, label=tool, color=colours[tool])
    ax.set(title="Mirror: pause set, all platforms", ylabel="wall time (s)", xticks=[0, 1])
    ax.set_xticklabels(["cold copy", "re-copy"])
    ax.legend()
    ax = axes[1][1]
    check = results["check"]
    if check["available"] and check["sizes"]:
        check_sizes = [int(size) for size in check["sizes"]]
        medians, errors = spread([check["sizes"][str(s)]["seconds"] for s in check_sizes])
        ax.errorbar(check_sizes, medians, yerr=errors, marker="o", capsize=3, color=colours["podinfra"])
        ax.set(title="podinfra check", xlabel="nodes", ylabel="wall time (s)", xticks=check_sizes)
        ax.set_ylim(bottom=0)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "podinfra check: not available", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- notes: how each figure was made, from the results alone ----------------------------------------------


def node_notes(results: Results) -> list[str]:
    differences: dict[str, list[str]] = results["equivalence"]
    same = [size for size, found in differences.items() if not found]
    differing = "".join(f"; differing at {size}: {', '.join(found)}" for size, found in differences.items() if found)
    startups = results["meta"]["startups"]
    return [
        "Both tools: registry CA, `hosts.toml` for registry.k8s.io and for the local registry (server = the local "
        "registry, its CA, pull credentials), `sandbox_image` and `config_path` in `/etc/containerd/config.toml`, "
        "containerd restarted on change and waited for, pause 3.10 pulled and labelled pinned, kubelet flags file. "
        "podinfra edits the operator's config.toml; the Ansible playbook templates the whole file (Kubespray's way).",
        "Same end state, compared after the first run at each size on every node: containerd's effective config "
        "(`containerd config dump`), each hosts.toml (parsed TOML), CA, kubelet flags, file modes, the pause image "
        "record (digest, pinned label): "
        + (f"identical at {', '.join(same)} node(s)" if same else "never identical")
        + differing
        + ". Only podinfra keeps `config.toml.podinfra-backup` (not compared).",
        "Cold: before every cold run the nodes are reset to lab-fresh by `labtools.reset` (the lab's own "
        "config.toml back, certs.d, CA and kubelet flags removed, every k8s.io image removed with its content, "
        "containerd restarted and answering); the reset is not timed. Re-run: the same command again at once; "
        "each re-run changed nothing (pyinfra `success` = 0, Ansible `changed=0`), which the runner enforces.",
        "podinfra: `pyinfra -y --json --limit nodeK... inventories/lab.py deploys/node.py --data restart_batch=N`: "
        "all N nodes restart containerd at once, as Ansible's handler does with forks >= N (podinfra's default is "
        "one node at a time). Ansible: `ansible-playbook -i INVENTORY --limit ... benchmarks/ansible/node.yml` with "
        "`benchmarks/ansible/ansible.cfg` (pipelining, SSH ControlMaster, forks 50, no fact gathering); each run "
        "gets a fresh ControlPath directory, so both tools open new SSH connections every run. Both reach the nodes "
        "with the lab's key and pinned known_hosts (Ansible through the lab's ssh_config).",
        "Wall time is the whole command, process start included: "
        + ", ".join(f"`{name}` alone takes {seconds:.2f} s" for name, seconds in startups.items())
        + " (medians).",
    ]


def mirror_notes(results: Results) -> list[str]:
    podinfra, skopeo = results["mirror"]["podinfra"], results["mirror"]["skopeo"]
    start = results["meta"]["startups"]["podinfra versions"]
    work_cold = statistics.median(podinfra["cold"]) - start
    work_recopy = statistics.median(podinfra["recopy"]) - start
    return [
        "podinfra: `podinfra mirror --kubernetes-version 1.30 --kubernetes-version 1.31 --kubernetes-version 1.34 "
        "--source UPSTREAM --source-insecure --to DEST --insecure --json`. skopeo: one `skopeo sync --all --src yaml "
        "--dest docker --dest-tls-verify=false` of the same three tags (one process, its best case).",
        "Source: the lab's upstream (docker-registry on 127.0.0.1, plain HTTP). Destination: a fresh docker-registry "
        "on 127.0.0.1 (plain HTTP) for every cold copy; the re-copy goes into it right after. Every tag was checked "
        "to hold upstream's index digest after each cold copy.",
        "Bytes sent: everything the tool sent to the destination registry on the wire (HTTP requests: headers and "
        "bodies), counted by a small TCP proxy in front of it, in one extra cold + re-copy per tool (not the timed "
        "runs, so the proxy's overhead stays out of the times); HTTP requests counted there too. podinfra's own "
        f"`bytes_sent` (blob bytes uploaded) said {podinfra['reported_cold']:,} cold and "
        f"{podinfra['reported_recopy']:,} on the re-copy.",
        f"Where podinfra's time goes: its process start alone (`podinfra versions`) takes {start:.2f} s, against "
        f"{results['meta']['startups']['skopeo --version']:.2f} s for skopeo; less that, the copy itself takes about "
        f"{work_cold:.2f} s cold (skopeo in all: {statistics.median(skopeo['cold']):.2f} s) and {work_recopy:.2f} s "
        f"on the re-copy (skopeo in all: {statistics.median(skopeo['recopy']):.2f} s). Derived by subtraction of "
        "medians, not measured directly.",
    ]


def check_notes(results: Results) -> list[str]:
    if not results["check"]["available"]:
        return []
    return [
        "`podinfra check inventories/lab.py --limit nodeK... --json FILE` on nodes configured by deploys/node.py, "
        "the probe image mirrored; the sizes ran in alternation. Wall time of the whole command; the outcome "
        "column says whether the nodes passed, since a failing check can end early.",
    ]


def scale_notes(results: Results) -> list[str]:
    lines = [
        "PSS per node: for each node, the PSS (`/proc/PID/smaps_rollup`) of every process in the node's PID "
        "namespace (systemd, journald, networkd, sshd, containerd and its shims) plus its systemd-nspawn process, "
        "read after the benchmarks (containerd restarted, pause pulled). Shared pages are split between sharers, "
        "so the sum over nodes is what they cost together. It leaves out kernel memory (page cache, tmpfs, slab).",
        "CPU per idle node: utime + stime (`/proc/PID/stat`) of the same processes over 10 s with nothing asked of "
        "the nodes, as a share of one core (the kernel counts in 10 ms ticks, so 0.1% is one tick).",
        "inotify: the lab's processes all run as root on the host (no user namespace), so every lab on the machine "
        "draws on root's fs.inotify.max_user_instances; counted as the `anon_inode:inotify` descriptors of each "
        "node's root-owned processes. A 20-node lab next to another engineer's 2-node lab exhausted it: 4 nodes hung "
        "at boot (systemd stuck after network.target, no sshd), so these runs stop at 10 nodes and the runner "
        "refuses a lab that would cross the limit.",
    ]
    if results["scale"].get("lab_up_delta_mib") is not None:
        lines.append(
            "MemAvailable drop on `lab up`: /proc/meminfo before `podinfra lab up` and 5 s after it returned, "
            "divided by the hosts it booted (nodes + registry); it includes kernel memory, and other engineers' "
            "labs on this shared machine can move it."
        )
    return lines


def capacity(scale: dict[str, Any]) -> str:
    """How many nodes fit: by memory (the larger of PSS and the MemAvailable drop per host), and by inotify."""
    delta = scale.get("lab_up_delta_mib")
    per_node = max(statistics.median(scale["node_pss_mib"]), (delta or 0) / (scale["lab_nodes"] + 1))
    by_memory = int((scale["mem_total_mib"] - 2048) / per_node)  # 2 GiB kept for the host, tools and registries
    per_host = max(scale["inotify_per_node"])
    return (
        f"**about {scale['inotify_limit'] // per_host} lab hosts on the whole machine, all labs together**, bound by "
        f"root's inotify instances ({per_host} per node, fs.inotify.max_user_instances = {scale['inotify_limit']}); "
        f"memory alone would allow about {by_memory} at {per_node:.0f} MiB each (MemTotal less 2 GiB), idle CPU "
        f"far more; a /24 lab holds at most 244"
    )
