"""The local registry under a fleet's pulls: authenticated manifest and blob GETs from N concurrent clients
through the front (nginx: TLS, the htpasswd users, read-only pulls), against the same docker-registry without
it (plain HTTP on loopback, no users): the backend alone is the machine's limit.

Both are asked from the registry host itself, by curl --parallel (a process per 250 clients: curl's most),
so the clients cost the same on both sides and the backend needs no port opened to the network. Each
client's requests alternate between the pause manifest (the platform's, by digest) and its layer blob, as a
node's pull does. Two connection patterns: `reused` (each client keeps its connection, as containerd does) and
`fresh` (a new connection, and so a new TLS handshake through the front, for every request: a fleet after a
restart wave at its worst).
"""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

import labtools
from labtools import KUBERNETES_VERSION, Lab

from podinfra import versions
from podinfra.images.oci import ALL_MANIFEST_TYPES

CA, HTPASSWD = "/etc/podinfra/registry/ca.crt", "/etc/podinfra/registry/htpasswd"
BACKEND = "http://127.0.0.1:5001"  # podinfra.data.models: registry_backend_port's default
PER_CURL = 250  # curl --parallel-max's highest value
TARGET = 2.0  # the front within 2x of the backend alone


def _on_registry(lab: Lab, script: str) -> str:
    return lab.on_all({"registry": script})["registry"]


def _scheme(entry: str) -> str:
    """``user:{SCHEME}`` or ``user:$2b$10$`` of an htpasswd line: its hash scheme, none of the hash."""
    user, _, hashed = entry.partition(":")
    found = re.match(r"\{[A-Z]+\}|\$[0-9a-z]+\$[0-9]+\$", hashed)
    return f"{user}:{found[0] if found else '(other)'}"


def _pull_path(lab: Lab) -> tuple[str, str]:
    """(manifest path, blob path) under /v2/ of the pause image a node of this machine's platform pulls."""
    tag = versions.pause_tag(KUBERNETES_VERSION)
    accept = ", ".join(ALL_MANIFEST_TYPES)
    index = json.loads(_on_registry(lab, f"curl -sf -H 'Accept: {accept}' {BACKEND}/v2/pause/manifests/{tag}"))
    digest = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    manifest = json.loads(_on_registry(lab, f"curl -sf -H 'Accept: {accept}' {BACKEND}/v2/pause/manifests/{digest}"))
    return f"pause/manifests/{digest}", f"pause/blobs/{manifest['layers'][0]['digest']}"


def _script(base: str, paths: tuple[str, str], clients: int, requests: int, fresh: bool, auth: str) -> str:
    """A shell script that asks `requests` GETs of `clients` concurrent clients and prints the seconds it took
    and every answer's status, one a line."""
    accept = ", ".join(ALL_MANIFEST_TYPES)
    curls = -(-clients // PER_CURL)
    lines = [auth, f'header = "Accept: {accept}"'] + (['header = "Connection: close"'] if fresh else [])
    share = requests // curls
    urls = "\n".join(f'url = "{base}/v2/{paths[i % 2]}"\noutput = "/dev/null"' for i in range(share))
    return (
        "d=$(mktemp -d); trap 'rm -rf $d' EXIT\n"
        "cat > $d/config <<'EOF'\n" + "\n".join(lines) + "\n" + urls + "\nEOF\n"
        "start=$(date +%s.%N)\n"
        + "".join(
            f"curl -s -Z --parallel-immediate --parallel-max {min(PER_CURL, clients - i * PER_CURL)} -K $d/config "
            f"-w '%{{http_code}}\\n' > $d/out{i} &\n"
            for i in range(curls)
        )
        + "wait\nend=$(date +%s.%N)\nawk -v s=$start -v e=$end 'BEGIN { print \"seconds\", e - s }'\ncat $d/out*\n"
    )


def _once(lab: Lab, script: str) -> tuple[float, int, int]:
    """(seconds, answers that were 200, all answers)."""
    lines = _on_registry(lab, script).split()
    seconds = float(lines[lines.index("seconds") + 1])
    codes = [line for line in lines[lines.index("seconds") + 2 :] if line.isdigit()]
    return seconds, codes.count("200"), len(codes)


def bench_registry(lab: Lab, runs: int, clients: int = 500, requests: int = 5000) -> dict[str, Any]:
    """Per connection pattern, the seconds of `requests` GETs by `clients` clients through the front and to the
    backend alone, `runs` times each in alternation; every answer must be 200."""
    users = json.loads((lab.pki / "registry" / "users.json").read_text())
    front = f"https://{lab.registry.address}:5000"
    paths = _pull_path(lab)
    auth = {"front": f'user = "pull:{users["pull"]}"\ncacert = "{CA}"', "backend": ""}
    bases = {"front": front, "backend": BACKEND}
    results: dict[str, Any] = {
        "meta": {
            **labtools.stamp(),
            "clients": clients,
            "requests": requests,
            "runs": runs,
            "paths": list(paths),
            "htpasswd": [_scheme(line) for line in _on_registry(lab, f"cat {HTPASSWD}").split()],
        }
    }
    for pattern in ("reused", "fresh"):
        samples: dict[str, list[float]] = {"front": [], "backend": []}
        for _ in range(runs):
            for side in ("front", "backend"):
                labtools.progress(f"registry load: {pattern} connections, {side}, {clients} clients")
                script = _script(bases[side], paths, clients, requests, pattern == "fresh", auth[side])
                seconds, ok, asked = _once(lab, script)
                if ok != asked or asked < requests - PER_CURL:
                    raise RuntimeError(f"registry load, {side}: {ok} of {asked} answers were 200")
                samples[side].append(round(seconds, 3))
        ratio = statistics.median(samples["front"]) / statistics.median(samples["backend"])
        results[pattern] = {**samples, "ratio": round(ratio, 2)}
    return results


def table(load: dict[str, Any]) -> str:
    meta = load["meta"]
    rows = [
        "| connections | front (TLS, users) s | backend alone s | front / backend | requests per s, front |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pattern in ("reused", "fresh"):
        front, backend = (statistics.median(load[pattern][side]) for side in ("front", "backend"))
        rows.append(
            f"| {pattern} | {front:.2f} | {backend:.2f} | {load[pattern]['ratio']:.2f}x | "
            f"{meta['requests'] / front:.0f} |"
        )
    return "\n".join(rows)


def target(load: dict[str, Any]) -> str:
    worst = max(load[p]["ratio"] for p in ("reused", "fresh"))
    met = "met" if worst <= TARGET else "not met"
    return (
        f"- registry: {load['meta']['requests']} authenticated GETs by {load['meta']['clients']} concurrent clients "
        f"within {TARGET:g}x of the backend alone: **{met}** (worst {worst:.2f}x)"
    )
