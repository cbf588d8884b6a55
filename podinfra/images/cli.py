"""`podinfra versions|mirror|export|import`: the catalogue and moving images into the gap."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO, TypeVar

from podinfra import table, versions
from podinfra.errors import PodinfraError
from podinfra.images.mirror import RegistrySource, Source, Summary, copy_image, registry_source
from podinfra.images.reference import Reference, parse, split_registry, under
from podinfra.images.registry import RegistryClient
from podinfra.images.transfer import Cancelled, Meter, Transfers, results
from podinfra.table import plural
from podinfra.versions import UPSTREAM

COPIES_AT_ONCE = 4  # images; their blobs share one pool of `transfer.TRANSFERS`
F = TypeVar("F", bound=Callable[[argparse.Namespace], int])


def one_line(command: F) -> F:
    """What the mirror commands may meet besides a registry's answer (a file that is not there, Ctrl-C) as one
    line (``podinfra: ...``, exit 2) rather than a traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except KeyboardInterrupt:
            raise PodinfraError(
                "interrupted: nothing was tagged for images not finished; run again to resume"
            ) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise PodinfraError(f"{where}{exc.strerror or exc.__class__.__name__}") from None

    return run  # type: ignore[return-value]


class Progress:
    """Bytes and rate while copies run, on stderr when it is a terminal; nothing at all under --json or when
    it is not (a log, a pipe, CI). One tqdm bar for the run (bytes sent of those known so far, and the rate),
    the images in flight after it; a line per image when it is done (its bytes, time and rate). One line,
    because bars of images that end in any order would scroll over what is printed after them."""

    def __init__(self, quiet: bool, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.lock = threading.Lock()
        self.images: dict[str, _Image] = {}
        self.total: Any = None  # the tqdm bar while an image is in flight

    @contextlib.contextmanager
    def bar(self, name: str) -> Iterator[Meter | None]:
        if not self.enabled:
            yield None
            return
        from tqdm import tqdm  # only on a terminal

        with self.lock:
            if self.total is None:
                self.total = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, file=self.stream, leave=False)
            image = self.images[name] = _Image(self, name)
        try:
            yield image
        finally:
            with self.lock:
                del self.images[name]
                if image.sent:
                    seconds = max(time.monotonic() - image.started, 1e-3)
                    line = f"{name}: {_size(image.sent)} in {seconds:.1f} s ({_size(image.sent / seconds)}/s)"
                    self.total.write(line, file=self.stream)  # clears the bar, prints the line, draws it again
                if not self.images:
                    self.total.close()
                    self.total = None

    def _show(self) -> None:
        shown = (f"{name.rsplit('/', 1)[-1]} {_size(image.sent)}" for name, image in self.images.items())
        self.total.set_postfix_str(", ".join(shown))


class _Image:
    """One image's share of the bar, as a `transfer.Meter`; its blob threads share it, hence the lock."""

    def __init__(self, progress: Progress, name: str):
        self.progress, self.name, self.sent, self.started = progress, name, 0, time.monotonic()

    def add_total(self, n: int) -> None:
        with self.progress.lock:
            self.progress.total.total += n
            self.progress.total.refresh()

    def update(self, n: int) -> None:
        with self.progress.lock:
            self.sent += n
            self.progress._show()
            self.progress.total.update(n)


def _size(n: float) -> str:
    from tqdm import tqdm

    return str(tqdm.format_sizeof(n, "B", 1024))


def requested_images(args: argparse.Namespace) -> list[Reference]:
    """Validate everything asked for before any registry is contacted."""
    refs = [parse(f"{UPSTREAM}/pause:{versions.pause_tag(v, versions.CLI_FIX)}") for v in args.kubernetes_version]
    refs += [parse(text) for text in args.image]
    if not refs:
        raise argparse.ArgumentTypeError("nothing to copy: give --kubernetes-version and/or --image")
    split_registry(args.source)
    return list(dict.fromkeys(refs))


def sources(refs: Sequence[Reference], args: argparse.Namespace) -> list[RegistrySource]:
    """A source for each image; images of one registry share its client (one connection pool)."""
    clients: dict[str, RegistryClient] = {}
    return [registry_source(ref, args.source, args.source_insecure, args.source_ca_file, clients) for ref in refs]


def destination(args: argparse.Namespace) -> tuple[RegistryClient, str]:
    host, prefix = split_registry(args.to)
    password = os.environ.get("PODINFRA_REGISTRY_PASSWORD")
    if args.password_file:
        try:
            password = Path(args.password_file).read_text().strip()
        except OSError as exc:
            raise PodinfraError(f"password file {args.password_file}: {exc.strerror}") from None
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
        f"\n{plural(len(summary.images), 'image')}, {plural(len(platforms), 'platform')}, "
        f"{plural(summary.bytes_sent, 'byte')} sent, {plural(summary.blobs_uploaded, 'blob')} uploaded, "
        f"{summary.blobs_skipped} skipped (present), {summary.blobs_mounted} mounted; "
        f"{plural(summary.images_present, 'image')} complete there already"
    )
    if not summary.changed:
        print(f"nothing {verb}: the registry already holds every image")
    print("\npinned references for nodes:")
    for image in summary.images:
        print(f"  {image['destination']}")


def push_all(
    images: Sequence[tuple[Reference, Source, str]], args: argparse.Namespace, platforms: set[str] | None
) -> Summary:
    """Copy `images` into the destination, a few at a time, their blobs through one bounded pool and one
    connection pool to the destination."""
    dest, prefix = destination(args)
    held = dest.repositories()
    progress = Progress(args.json)

    def copy_one(image: tuple[Reference, Source, str]) -> Summary:
        ref, source, reference = image
        if transfers.stop.is_set():
            raise Cancelled(f"{ref}: stopped")
        dest_repo = under(prefix, ref.repository)
        # The same image under another prefix can lend its blobs by cross-repository mount.
        name = ref.repository.rsplit("/", 1)[-1]
        kin = tuple(r for r in held if r != dest_repo and r.rsplit("/", 1)[-1] == name)
        part = Summary()
        with progress.bar(str(ref)) as meter:
            copy_image(source, reference, dest, dest_repo, ref.tag, part, platforms, kin, transfers, meter)
        return part

    summary = Summary()
    with Transfers() as transfers, ThreadPoolExecutor(COPIES_AT_ONCE, thread_name_prefix="podinfra-image") as pool:
        for part in results([pool.submit(copy_one, image) for image in images], transfers.stop):
            summary.add(part)
    return summary


@one_line
def mirror(args: argparse.Namespace) -> int:
    refs = requested_images(args)
    platforms = set(args.platform) or None
    summary = push_all(list(zip(refs, sources(refs, args), [r.reference for r in refs], strict=True)), args, platforms)
    report(summary, args.json, "uploaded")
    return 0


@one_line
def export(args: argparse.Namespace) -> int:
    from podinfra.images import archive  # tarfile: only for archives

    refs = requested_images(args)
    out = Path(args.output)
    progress = Progress(quiet=False)
    entries = archive.export(
        list(zip(refs, sources(refs, args), strict=True)), out, set(args.platform) or None, progress.bar
    )
    print(
        table.render(("IMAGE", "DIGEST"), [(e["annotations"][archive.NAME_ANNOTATION], e["digest"]) for e in entries])
    )
    print(f"\nwrote {out} ({out.stat().st_size} bytes): carry it in, then `podinfra import {out.name} --to REGISTRY`")
    return 0


@one_line
def import_(args: argparse.Namespace) -> int:
    from podinfra.images import archive  # tarfile: only for archives

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
                        k: {
                            "pause": v,
                            "kubelet_flag": versions.kubelet_takes_pause_flag(k),
                            "read_at": versions.KUBERNETES_PAUSE_READ_AT.get(k, f"v{k}.0"),
                        }
                        for k, v in versions.KUBERNETES_PAUSE.items()
                    },
                    "kubernetes_source": versions.KUBERNETES_PAUSE_SOURCE,
                    "containerd_default_pause": versions.CONTAINERD_PAUSE,
                    "containerd_source": versions.CONTAINERD_PAUSE_SOURCE,
                },
                indent=2,
            )
        )
        return 0
    rows = [
        (
            k,
            f"{UPSTREAM}/pause:{v}",
            "yes" if versions.kubelet_takes_pause_flag(k) else "no (removed)",
            versions.KUBERNETES_PAUSE_READ_AT.get(k, f"v{k}.0"),
        )
        for k, v in versions.KUBERNETES_PAUSE.items()
    ]
    heads = ("KUBERNETES", "PAUSE (kubeadm)", "KUBELET --pod-infra-container-image", "READ AT")
    print(table.render(heads, rows))
    print(f"source: {versions.KUBERNETES_PAUSE_SOURCE}")
    print()
    defaults = [(c, f"{UPSTREAM}/pause:{v}") for c, v in versions.CONTAINERD_PAUSE.items()]
    print(table.render(("CONTAINERD", "DEFAULT SANDBOX IMAGE"), defaults))
    print(f"source: {versions.CONTAINERD_PAUSE_SOURCE}; 2.4 at v2.4.0-beta.0")
    return 0
