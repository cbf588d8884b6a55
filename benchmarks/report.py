"""RESULTS.md, from the results dict that run.py collects (also kept as results.json): targets, tables, notes."""

from __future__ import annotations

import statistics

from figures import (
    CHECK_CPU_TARGET,
    RERUN_TARGET,
    RSS_TARGET_MIB,
    Results,
    archive_table,
    check_table,
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


def markdown(results: Results) -> str:
    meta = results["meta"]
    parts = [
        "# Benchmarks: podinfra next to Ansible, skopeo and crane",
        f"Written by `{meta['command']}` on {meta['date']}. Machine: {meta['machine']}. "
        f"Each figure: median of {meta['runs']} run(s), (min-max) after it; the two tools ran in alternation "
        "(A B A B), so the machine's noise falls on both. The machine is shared with other engineers' labs: "
        f"load average at the start {meta['load']}; labs on it then, this run's included: {', '.join(meta['labs'])}.",
        f"Versions: {meta['versions']}.",
        "## Targets",
        "\n".join(targets(results)),
        "## Node configuration: `deploys/node.py` (pyinfra) and `benchmarks/ansible/node.yml` (ansible-core), "
        f"containerd {meta['containerd']} fleet",
        node_table(results["nodes"]),
        "\n".join(f"- {line}" for line in node_notes(results)),
        *(fleet21_parts(results["fleet21"]) if "fleet21" in results else []),
        "## Mirror: pause for Kubernetes " + ", ".join(meta["minors"]) + f" ({', '.join(meta['tags'])}), all platforms",
        mirror_table(results),
        "\n".join(f"- {line}" for line in mirror_notes(results)),
        *(large_parts(results["mirror_large"]) if "mirror_large" in results else []),
        "## `podinfra check` and the same suite under pytest-xdist",
        check_table(results),
        "\n".join(f"- {line}" for line in check_notes(results)),
        "## Lab scale",
        scale_table(results),
        "\n".join(f"- {line}" for line in scale_notes(results)),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"



# --- notes: how each figure was made, from the results alone ----------------------------------------------


def same_end_state(differences: dict[str, list[str]]) -> str:
    same = [size for size, found in differences.items() if not found]
    differing = "".join(f"; differing at {size}: {', '.join(found)}" for size, found in differences.items() if found)
    return (
        "Same end state, compared after the first run at each size on every node: containerd's effective config "
        "(`containerd config dump`), each hosts.toml (parsed TOML), CA, kubelet flags file (or its absence), file "
        "modes, the pause image record (digest, pinned label): "
        + (f"identical at {', '.join(same)} node(s)" if same else "never identical")
        + differing
        + ". Only podinfra keeps `config.toml.podinfra-backup` (not compared)."
    )


def node_notes(results: Results) -> list[str]:
    startups = results["meta"]["startups"]
    return [
        "Both tools: registry CA, `hosts.toml` for registry.k8s.io and for the local registry (server = the local "
        "registry, its CA, pull credentials), the sandbox image and `config_path` in `/etc/containerd/config.toml`, "
        "containerd restarted on change and waited for, pause 3.10 pulled and labelled pinned, and the kubelet "
        "flags file where a kubelet is installed (the lab's nodes have none, so neither tool writes it; the "
        "playbook asks `command -v kubelet`, as podinfra does). podinfra edits the operator's config.toml; the "
        "Ansible playbook templates the whole file (Kubespray's way), in the shape of the host's containerd line.",
        same_end_state(results["equivalence"]),
        "Cold: before every cold run the nodes are reset to lab-fresh by `labtools.reset` (each node's own "
        "containerd line's stock config.toml back, certs.d, CA and kubelet flags removed, every k8s.io image "
        "removed with its content, containerd restarted and answering); the reset is not timed. Re-run: the same "
        "command again at once; each re-run changed nothing (pyinfra `success` = 0, Ansible `changed=0`), which "
        "the runner enforces.",
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


def fleet21_parts(fleet: Results) -> list[str]:
    notes = [
        f"A lab of its own (`{fleet['lab']}`), every node on containerd {', '.join(fleet['containerd'])}, brought "
        "up after the main fleet's phases (and after its lab was down, when the run had brought it up); labs up "
        f"then: {', '.join(fleet['labs'])}. The same commands, runs in the same alternation, the same reset to "
        "lab-fresh and the same no-change check as the main fleet.",
        "The config is version 3: podinfra edits the line's stock version 3 file, setting "
        "`plugins.'io.containerd.cri.v1.images'.pinned_images.sandbox` and `...images'.registry.config_path`; the "
        "playbook's template takes that shape for a host whose `containerd_line` is 2.0 or later (the version 2 "
        "shape below it), as Kubespray picks its template by `containerd_version`.",
        same_end_state(fleet["equivalence"]),
    ]
    return [
        "## Node configuration on a containerd 2.1 fleet",
        node_table(fleet["nodes"]),
        "\n".join(f"- {line}" for line in notes),
    ]


def mirror_notes(results: Results) -> list[str]:
    podinfra = results["mirror"]["podinfra"]
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
    ] + where_mirror_time_goes(results)


def where_mirror_time_goes(results: Results) -> list[str]:
    podinfra, skopeo = results["mirror"]["podinfra"], results["mirror"]["skopeo"]
    startups = results["meta"]["startups"]
    lines = [
        "The re-copy asks only for tags: podinfra reads the source's top manifest (index) and asks the "
        "destination (HEAD) for the tag; when it already names that digest the image is complete there "
        "(registries refuse a manifest whose blobs or manifests they lack, and podinfra writes the tag last), so "
        "no platform manifest or blob is asked for. The three images are copied in parallel threads."
    ]
    in_process = results["mirror"].get("in_process", {})
    if not in_process.get("cold"):
        return lines
    cold, recopy = statistics.median(in_process["cold"]), statistics.median(in_process["recopy"])
    skopeo_cold, skopeo_recopy = statistics.median(skopeo["cold"]), statistics.median(skopeo["recopy"])
    startup = statistics.median(podinfra["cold"]) - cold
    floor = startups.get("python -c pass")
    lines.append(
        "Where podinfra's time goes: the in-process row is the same command run through `podinfra.cli.main` in "
        "a Python process that had imported podinfra already (as `deploys/mirror.py` copies inside pyinfra's "
        f"process): {cold:.2f} s cold and {recopy:.3f} s for the re-copy, against {skopeo_cold:.2f} "
        f"s and {skopeo_recopy:.2f} s for skopeo's whole run. The rest of `podinfra mirror`'s time is the "
        f"interpreter's start and imports (requests above all): about {startup:.2f} "
        "s, derived by subtraction of medians; skopeo, a Go binary, starts in "
        f"{startups['skopeo --version']:.2f} s."
        + (
            f" A Python process that does nothing (`python -c pass`) takes {floor:.2f} s, against the "
            f"{skopeo_recopy / 5:.3f} s a re-copy 5x faster than skopeo's would have in all: out of reach for a "
            "command-line run in Python on this machine, met by the copy itself."
            if floor
            else ""
        )
    )
    return lines


def check_notes(results: Results) -> list[str]:
    check = results["check"]
    if not check["available"]:
        return []
    meta = check["meta"]
    lines = [
        f"Measured by `{meta['command']}` on {meta['date']} ({meta['seconds']} s), {meta['runs']} run(s) per figure, "
        f"sizes and tools in alternation; load average at the start {meta['load']}. Versions: {meta['versions']}. "
        "The nodes were configured by deploys/node.py first (deploys/mirror.py had put check 8's probe image into "
        "the local registry before the phases).",
        "podinfra: `podinfra check inventories/lab.py --limit nodeK... --json FILE`. pytest: `pytest -p "
        "podinfra.suite.plugin --pyargs podinfra.suite --hosts=ssh://node1,... --ssh-config=LAB_SSH "
        "--podinfra-inventory=inventories/lab.py -n N --dist loadgroup -q --junitxml FILE` (N = the nodes; "
        "PODINFRA_LAB, PODINFRA_KUBERNETES_VERSION set). The suite's plugin keeps each node's checks in one "
        "worker, in order (its pytest_xdist_make_scheduler groups by the host in the test id).",
        "Outcome: a node passes when its `total_fail` is 0 (podinfra check's kube-bench JSON), or when each of its "
        "checks ran and none failed or errored (pytest's JUnit XML, which records WARN and INFO as passed tests). "
        "On the lab check 4 is INFO (no kubelet) and check 5 WARN (containerd 1.6.20 keeps the pinned label but "
        "does not honour it).",
        "CPU of a command: user + system time of the command and every process it started, ssh included, from "
        "getrusage(RUSAGE_CHILDREN); the runner is a child subreaper while it runs, so the ssh ControlPersist "
        "masters that `podinfra check`'s runs leave to the system are counted too. CPU of the nodes: the whole "
        "machine's busy time over the same span (/proc/stat) less that; the nodes' own work (sshd sessions, "
        "`containerd config dump`, ctr, curl, containerd, shims, runc and CNI for the probe pods), plus whatever "
        "else ran on the machine then.",
    ]
    if per_added_node(check, "podinfra") is None:
        return lines
    sizes = check["podinfra"]
    control = {k: statistics.median(sizes[k]["control_cpu"]) for k in ("1", "10")}
    xdist = {k: statistics.median(check["xdist"][k]["control_cpu"]) for k in ("1", "10")}
    nodes = statistics.median(nodes_cpu(sizes["10"]))
    one = statistics.median(sizes["1"]["seconds"])
    cores = results["meta"].get("cores") or 2
    lines += [
        f"CPU per added node is (median CPU at 10 nodes - median at 1) / 9: podinfra check {control['1']:.2f} s "
        f"for 1 node, {control['10']:.2f} s for 10; pytest -n N {xdist['1']:.2f} s and {xdist['10']:.2f} s. "
        "podinfra check forks each node's run from one process that has imported pytest, testinfra and the "
        "suite once and read the inventory once, and multiplexes a node's commands over one SSH connection. "
        "Each of pytest-xdist's N workers is a new Python that imports pytest, testinfra and every installed "
        "plugin, loads the inventory with pyinfra and asks the local registry for the pause digest; and "
        "testinfra's ssh backend opens a new SSH connection for every command, since the lab's ssh_config names "
        "no ControlPath (testinfra's ControlMaster=auto does nothing without one).",
        f"Why 10 nodes do not fit in 2x of 1 here: the lab's nodes share this machine's {cores} cores with the "
        f"tool. At 10 nodes the nodes' own work alone takes about {nodes:.1f} CPU-seconds, at least "
        f"{nodes / cores:.1f} s of wall time on {cores} cores, against 2 x {one:.2f} s = {2 * one:.2f} s. On a real "
        "fleet each node does that work on its own CPUs; what grows with the fleet on the control host is the "
        "tool's own CPU.",
    ]
    return lines


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
        "node's root-owned processes. At the default limit (128) a 20-node lab next to another 2-node lab "
        "exhausted it: 4 nodes hung at boot (systemd stuck after network.target, no sshd). `podinfra lab up` now "
        "raises the limit before it boots anything, and the runner still refuses a lab that would cross it.",
    ]
    if results["scale"].get("lab_up_delta_mib") is not None:
        lines.append(
            "MemAvailable drop on `lab up`: /proc/meminfo before `podinfra lab up` and 5 s after it returned, "
            "divided by the hosts it booted (nodes + registry); it includes kernel memory, and other engineers' "
            "labs on this shared machine can move it."
        )
    return lines



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


def large_notes(large: Results) -> list[str]:
    meta = large["meta"]
    images = "; ".join(f"`{repo}:1.0` layers of {', '.join(f'{s:g}' for s in sizes)} MiB"
                       for repo, sizes in meta["images"].items())  # fmt: skip
    copy = large["copy"]
    notes = [
        f"Written by `{meta['command']}` on {meta['date']}, {meta['runs']} run(s) per figure in alternation "
        f"(podinfra, skopeo, crane; then the archives), load average at the end {meta['load']}. "
        f"Versions: {meta['versions']}.",
        f"The set, built by the runner in a loopback docker-registry of its own (the lab's upstream is the same "
        f"program) in {meta['build_seconds']:.0f} s: {images}; each for {' and '.join(meta['platforms'])}, an OCI "
        "index per image. Layers are real tar+gzip layers (one file of seeded random bytes, mtime 0, gzip at level 0 "
        "so that building them takes no CPU worth speaking of); the same seeds give the same digests on every run, "
        "and nothing is held whole in memory while they are made.",
        "Every registry of this phase keeps its data in /dev/shm: written to this VM's shared disk, the same copy "
        "took anywhere from 8 to 15 s. The destination registry is the bound: docker-registry hashes what it receives "
        "and took about 9 CPU-seconds per cold copy, whichever tool sent it, on a machine of 2 cores that other "
        "engineers' work also uses.",
        "podinfra: `podinfra mirror --image registry.k8s.io/large/base:1.0 ... --source UPSTREAM --source-insecure "
        "--to DEST --insecure --json` (the three images at once, their blobs at most 4 at a time, largest first, "
        "streamed in chunked PATCHes). skopeo: one `skopeo sync --all --src yaml --dest docker` of the three. "
        "crane: `crane copy --insecure SRC DEST` per image, one after the other as a shell loop over the set would "
        "(crane copies one image per command; its blobs 2 at a time, its default).",
        "Peak RSS: GNU time's maximum resident set size of each tool process (the largest of crane's three); wall "
        "time: the whole command or commands, process start included. Bytes and requests: everything each tool sent "
        "to the destination, through the counting proxy, in one extra cold copy and re-copy.",
        "Export and import: podinfra writes all three images into one archive (`podinfra export ... -o large.tar`) "
        "and imports it into a fresh registry; skopeo `copy --all` writes one `oci-archive` per image (the format "
        "holds one) and copies each into the fresh registry. Every copy was checked to hold upstream's index digests.",
    ]
    if "skopeo" in copy:
        in_process = large.get("in_process", {})
        if in_process.get("recopy"):
            recopy = statistics.median(copy["podinfra"]["recopy"])
            own = statistics.median(in_process["recopy"])
            notes.append(
                f"The re-copy: podinfra asks the destination {copy['podinfra'].get('requests_recopy')} requests "
                f"(the catalog, then one HEAD per tag), skopeo {copy['skopeo'].get('requests_recopy')}. Its "
                f"{recopy:.2f} s are nearly all the interpreter's start and imports (requests and urllib3 alone "
                f"import in about 0.25 s here): the same re-copy in a process with podinfra loaded takes {own:.3f} s, "
                f"against {statistics.median(copy['skopeo']['recopy']):.2f} s for skopeo's whole run."
            )
    return notes


def large_parts(large: Results) -> list[str]:
    return [
        large_title(large),
        large_table(large),
        "### Export and import (offline archives)",
        archive_table(large),
        "\n".join(f"- {line}" for line in large_notes(large)),
    ]


def large_markdown(large: Results) -> str:
    """RESULTS.md for a run of the large phase alone."""
    parts = ["# Benchmarks: mirror at size", "## Targets", "\n".join(large_targets(large)), *large_parts(large)]
    return "\n\n".join(parts) + "\n"

