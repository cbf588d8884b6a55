"""`podinfra versions|mirror|export|import`: the catalogue and moving images into the gap."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from podinfra import archive, table, versions
from podinfra.mirror import UPSTREAM, RegistrySource, Source, Summary, copy_image, registry_source
from podinfra.reference import Reference, parse, split_registry
from podinfra.registry import RegistryClient


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubernetes-version", action="append", default=[], help="pause for this minor (repeatable)")
    p.add_argument("--image", action="append", default=[], help="any other image reference (repeatable)")
    p.add_argument("--source", default=UPSTREAM, help=f"where {UPSTREAM} images are read from (a mirror of it)")
    p.add_argument("--source-insecure", action="store_true", help="plain HTTP to the source")
    p.add_argument("--source-ca-file", help="CA bundle for the source's TLS")
    p.add_argument("--platform", action="append", default=[], help="limit to OS/ARCH[/VARIANT] (repeatable)")


def add_destination_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, metavar="REGISTRY[/PREFIX]", help="the local registry")
    p.add_argument("--insecure", action="store_true", help="plain HTTP to the destination (never the default)")
    p.add_argument("--ca-file", help="CA bundle for the destination's TLS")
    p.add_argument("--username", default=os.environ.get("PODINFRA_REGISTRY_USERNAME"))
    p.add_argument("--password-file", help="file holding the destination password (or env PODINFRA_REGISTRY_PASSWORD)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def requested_images(args: argparse.Namespace) -> list[Reference]:
    """Validate everything asked for before any registry is contacted."""
    refs = [parse(f"{UPSTREAM}/pause:{versions.pause_tag(v)}") for v in args.kubernetes_version]
    refs += [parse(text) for text in args.image]
    if not refs:
        raise argparse.ArgumentTypeError("nothing to copy: give --kubernetes-version and/or --image")
    split_registry(args.source)
    return list(dict.fromkeys(refs))


def source_for(ref: Reference, args: argparse.Namespace) -> RegistrySource:
    return registry_source(ref, args.source, args.source_insecure, args.source_ca_file)


def destination(args: argparse.Namespace) -> tuple[RegistryClient, str]:
    host, prefix = split_registry(args.to)
    password = os.environ.get("PODINFRA_REGISTRY_PASSWORD")
    if args.password_file:
        password = Path(args.password_file).read_text().strip()
    client = RegistryClient(
        f"{'http' if args.insecure else 'https'}://{host}",
        ca_file=args.ca_file,
        username=args.username,
        password=password,
    )
    return client, prefix


def report(summary: Summary, as_json: bool, verb: str) -> None:
    platforms = sorted({p for image in summary.images for p in image["platforms"]})
    if as_json:
        print(json.dumps({**summary.__dict__, "changed": summary.changed, "platforms": platforms}, indent=2))
        return
    rows = [(i["source"], ", ".join(i["platforms"]) or "-", i["digest"][:19]) for i in summary.images]
    print(table.render(("IMAGE", "PLATFORMS", "DIGEST"), rows))
    print(
        f"\n{len(summary.images)} images, {len(platforms)} platforms, {summary.bytes_sent} bytes sent, "
        f"{summary.blobs_uploaded} blobs uploaded, {summary.blobs_skipped} skipped (present), "
        f"{summary.blobs_mounted} mounted"
    )
    if not summary.changed:
        print(f"nothing {verb}: the registry already holds every image")
    print("\npinned references for nodes:")
    for image in summary.images:
        print(f"  {image['destination']}")


def push_all(
    images: Sequence[tuple[Reference, Source, str]], args: argparse.Namespace, platforms: set[str] | None
) -> Summary:
    dest, prefix = destination(args)
    summary = Summary()
    held = dest.repositories()
    for ref, source, reference in images:
        dest_repo = f"{prefix}/{ref.repository}" if prefix else ref.repository
        # The same image under another prefix can lend its blobs by cross-repository mount.
        name = ref.repository.rsplit("/", 1)[-1]
        kin = tuple(r for r in held if r != dest_repo and r.rsplit("/", 1)[-1] == name)
        progress(f"{ref} -> {dest.host}/{dest_repo}")
        copy_image(source, reference, dest, dest_repo, ref.tag, summary, platforms, mount_from=kin, progress=progress)
        held.append(dest_repo)
    return summary


def mirror(args: argparse.Namespace) -> int:
    refs = requested_images(args)
    platforms = set(args.platform) or None
    summary = push_all([(ref, source_for(ref, args), ref.reference) for ref in refs], args, platforms)
    report(summary, args.json, "uploaded")
    return 0


def export(args: argparse.Namespace) -> int:
    refs = requested_images(args)
    out = Path(args.output)
    entries = archive.export([(ref, source_for(ref, args)) for ref in refs], out, set(args.platform) or None)
    print(
        table.render(("IMAGE", "DIGEST"), [(e["annotations"][archive.NAME_ANNOTATION], e["digest"]) for e in entries])
    )
    print(f"\nwrote {out} ({out.stat().st_size} bytes): carry it in, then `podinfra import {out.name} --to REGISTRY`")
    return 0


def import_(args: argparse.Namespace) -> int:
    source, entries = archive.load(Path(args.archive))
    images = [(parse(str(e["annotations"][archive.NAME_ANNOTATION])), source, str(e["digest"])) for e in entries]
    summary = push_all(images, args, None)
    report(summary, args.json, "imported")
    return 0


def show_versions(args: argparse.Namespace) -> int:
    if args.json:
        print(
            json.dumps(
                {
                    "kubernetes": {
                        k: {"pause": v, "kubelet_flag": versions.kubelet_takes_pause_flag(k)}
                        for k, v in versions.KUBERNETES_PAUSE.items()
                    },
                    "containerd_default_pause": versions.CONTAINERD_PAUSE,
                },
                indent=2,
            )
        )
        return 0
    rows = [
        (k, f"{UPSTREAM}/pause:{v}", "yes" if versions.kubelet_takes_pause_flag(k) else "no (removed)")
        for k, v in versions.KUBERNETES_PAUSE.items()
    ]
    print(table.render(("KUBERNETES", "PAUSE (kubeadm)", "KUBELET --pod-infra-container-image"), rows))
    print()
    defaults = [(c, f"{UPSTREAM}/pause:{v}") for c, v in versions.CONTAINERD_PAUSE.items()]
    print(table.render(("CONTAINERD", "DEFAULT SANDBOX IMAGE"), defaults))
    return 0
