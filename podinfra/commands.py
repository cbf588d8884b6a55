"""`podinfra versions|mirror|export|import`: the catalogue and moving images into the gap."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from podinfra import table, versions
from podinfra.mirror import RegistrySource, Source, Summary, copy_image, registry_source
from podinfra.reference import Reference, parse, split_registry
from podinfra.registry import RegistryClient
from podinfra.versions import UPSTREAM

COPIES_AT_ONCE = 4


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
        f"{summary.blobs_mounted} mounted; {summary.images_present} images complete there already"
    )
    if not summary.changed:
        print(f"nothing {verb}: the registry already holds every image")
    print("\npinned references for nodes:")
    for image in summary.images:
        print(f"  {image['destination']}")


def push_all(
    images: Sequence[tuple[Reference, Source, str]], args: argparse.Namespace, platforms: set[str] | None
) -> Summary:
    """Copy `images` into the destination, a few at a time (the time goes on round trips, not bytes)."""
    dest, prefix = destination(args)
    held = dest.repositories()

    def copy_one(image: tuple[Reference, Source, str]) -> Summary:
        ref, source, reference = image
        client = destination(args)[0]  # one per thread: a requests session is not made to be shared
        dest_repo = f"{prefix}/{ref.repository}" if prefix else ref.repository
        # The same image under another prefix can lend its blobs by cross-repository mount.
        name = ref.repository.rsplit("/", 1)[-1]
        kin = tuple(r for r in held if r != dest_repo and r.rsplit("/", 1)[-1] == name)
        progress(f"{ref} -> {dest.host}/{dest_repo}")
        part = Summary()
        copy_image(source, reference, client, dest_repo, ref.tag, part, platforms, mount_from=kin, progress=progress)
        return part

    summary = Summary()
    pool = ThreadPoolExecutor(max_workers=COPIES_AT_ONCE)
    try:
        for part in pool.map(copy_one, images):
            summary.add(part)
    finally:  # after a failure (or Ctrl-C) the images not started yet are not started
        pool.shutdown(cancel_futures=True)
    return summary


def mirror(args: argparse.Namespace) -> int:
    refs = requested_images(args)
    platforms = set(args.platform) or None
    summary = push_all([(ref, source_for(ref, args), ref.reference) for ref in refs], args, platforms)
    report(summary, args.json, "uploaded")
    return 0


def export(args: argparse.Namespace) -> int:
    from podinfra import archive  # tarfile: only for archives

    refs = requested_images(args)
    out = Path(args.output)
    entries = archive.export([(ref, source_for(ref, args)) for ref in refs], out, set(args.platform) or None)
    print(
        table.render(("IMAGE", "DIGEST"), [(e["annotations"][archive.NAME_ANNOTATION], e["digest"]) for e in entries])
    )
    print(f"\nwrote {out} ({out.stat().st_size} bytes): carry it in, then `podinfra import {out.name} --to REGISTRY`")
    return 0


def import_(args: argparse.Namespace) -> int:
    from podinfra import archive  # tarfile: only for archives

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
