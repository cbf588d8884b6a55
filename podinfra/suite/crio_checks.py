"""The CRI-O side of checks 2, 3, 6, 7 and 8: what a CRI-O node must show, read from what it showed.

Checks 2 and 3 return (expected, actual, problems); ``test_checks`` records them. CRI-O's running config comes
from the daemon (``crio status config``), its files from crio.conf and crio.conf.d in the order it reads
them (crio.conf(5)), the registries from registries.conf and its drop-ins merged as
containers-registries.conf.d(5) says.
"""

from __future__ import annotations

import hashlib

from podinfra.check.catalogue import CheckResult
from podinfra.node import crio
from podinfra.node import registries as registries_conf
from podinfra.suite.node import Node


def pause_image(node: Node) -> tuple[str, str, list[str]]:
    """Check 2: the running CRI-O's pause_image is the sandbox image, and its files say so too (none read
    after podinfra's drop-in overrides it)."""
    want = node.expect.store_name  # the deploy's pause_image: a digest drops the tag, so that CRI-O pins it
    expected = f"[crio.image] pause_image = {want!r} in the running CRI-O (crio status config) and in its files"
    running = node.crio_config()
    files = node.crio_files()
    settings, broken = crio.image_settings(files)
    on_disk = settings.get("pause_image")
    problems = list(broken)
    if running is None:
        return expected, f"CRI-O does not answer `crio status config` on {node.socket}", problems or ["no answer"]
    runs = running.get("pause_image")
    if on_disk is None or on_disk.value != want:
        where = f"{on_disk.source} sets pause_image = {on_disk.value!r}" if on_disk else "no file sets pause_image"
        later = [path for path in crio.overridden(files) if "pause_image" in crio.overridden(files)[path]]
        problems.append(
            where + (f" (read after {crio.DROPIN}, so it wins)" if on_disk and on_disk.source in later else "")
        )
    if runs != want:
        pending = on_disk is not None and on_disk.value == want
        problems.append(
            f"the running CRI-O has pause_image = {runs!r}" + (": a reload or restart is pending" if pending else "")
        )
    actual = "; ".join(problems) or f"pause_image = {runs!r} (running; set in {on_disk.source if on_disk else '?'})"
    return expected, actual, problems


def _references(node: Node) -> dict[str, str]:
    settings = node.expect.settings
    return registries_conf.references(node.expect.sandbox_image, settings.mirrored_registries, settings.local_registry)


def registries(node: Node) -> tuple[str, str, list[str]]:
    """Check 3: pulls of each mirrored registry go to the local registry only, and CRI-O has its CA."""
    settings = node.expect.settings
    registry = settings.local_registry
    ca = crio.ca_path(registry)
    expected = (
        f"registries.conf(.d) sends pulls of {', '.join(settings.mirrored_registries)} to {registry} only, "
        "no fallback to the upstream" + (f"; the registry's CA at {ca}" if settings.ca else "")
    )
    merged = node.registries()
    problems = []
    for reference in _references(node).values():
        problems += [p for p in registries_conf.registry_problems(merged, reference, registry) if p not in problems]
    if settings.ca:
        digest = node.sha256(ca)
        if digest is None:
            problems.append(f"{ca} is missing: CRI-O does not trust the local registry")
        elif digest != hashlib.sha256(settings.ca.read_bytes()).hexdigest():
            problems.append(f"{ca} is not the registry's CA")
    routes = [f"{upstream} -> {registries_conf.physical(merged, ref)}" for upstream, ref in _references(node).items()]
    return expected, "; ".join(problems) or "; ".join(routes) + " only", problems


def route(node: Node) -> tuple[str, str, str]:
    """Check 6 on CRI-O: (URL of the pause manifest where CRI-O would ask for it first, the CA file it would
    use, where the route came from)."""
    settings = node.expect.settings
    reference = node.expect.sandbox_image.split("@", 1)[0]
    merged = node.registries()
    physical = registries_conf.physical(merged, reference)
    host, _, path = physical.partition("/")
    repository, _, _ = path.rpartition(":")
    found = merged.entry_for(reference)
    source = found[2] if found else "the reference itself (no [[registry]])"
    url = f"https://{host}/v2/{repository}/manifests/{settings.pause}"
    return url, crio.ca_path(host), source


# What checks 7 and 8 prove on CRI-O, said in their results.
PROBE_CASE = (
    "proven on a PID-sharing sandbox: CRI-O runs pause only for those (drop_infra_ctr = true, its default, "
    "drops the infra container of the others)"
)


def verdict(record: CheckResult, found: tuple[str, str, list[str]], remediation: str) -> None:
    """Record a CRI-O check's (expected, actual, problems), with `remediation` where there are problems."""
    record.expected, record.actual, problems = found
    if problems:
        record.remediation = remediation
    assert not problems, record.actual
