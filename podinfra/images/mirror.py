"""Copy images into a registry exactly: every platform, digests kept, each byte verified before it
is committed, the tag written last so a failure never leaves a tag on an incomplete image.

Here the walk of an image's documents (index, manifests, their blobs) and what is copied in what order;
how the blobs' bytes move (streamed, verified, a bounded pool per run) is in podinfra.images.transfer.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Protocol

from podinfra.images.oci import INDEX_TYPES, MANIFEST_TYPES, Blob, encode
from podinfra.images.reference import Reference
from podinfra.images.registry import RegistryClient, RegistryError
from podinfra.images.transfer import Cancelled, Meter, Transfers, Verified, results, verified
from podinfra.versions import UPSTREAM


class Source(Protocol):
    """Where an image's manifests and blobs come from: a registry or an archive."""

    @property
    def name(self) -> str: ...

    def manifest(self, reference: str) -> Blob: ...

    def blob(self, digest: str) -> Iterator[bytes]:
        """The blob's bytes as they come (not yet verified); closing the iterator lets go of its stream."""
        ...


@dataclass
class RegistrySource:
    client: RegistryClient
    repository: str

    @property
    def name(self) -> str:
        return f"{self.client.host}/{self.repository}"

    def manifest(self, reference: str) -> Blob:
        return self.client.get_manifest(self.repository, reference)

    def blob(self, digest: str) -> Iterator[bytes]:
        return self.client.blob_chunks(self.repository, digest)


def registry_source(
    ref: Reference,
    upstream: str = UPSTREAM,
    insecure: bool = False,
    ca_file: str | None = None,
    clients: dict[str, RegistryClient] | None = None,
    flags: tuple[str, str | None] = ("--source-ca-file", "--source-insecure"),
) -> RegistrySource:
    """Read `ref` from its registry, or, for registry.k8s.io images, from `upstream` (a mirror of it).
    `clients`: one client (and connection pool) per registry, shared by every source made with it;
    `flags`: what its TLS hints tell to set (the CA, plain HTTP), e.g. a deploy's data keys."""
    clients = {} if clients is None else clients
    if ref.registry != UPSTREAM:
        url = f"https://{ref.registry}"
        if url not in clients:
            clients[url] = RegistryClient(url, flags=("REQUESTS_CA_BUNDLE (in the environment)", None))
        return RegistrySource(clients[url], ref.repository)
    url = f"{'http' if insecure else 'https'}://{upstream}"
    if url not in clients:
        clients[url] = RegistryClient(url, ca_file=ca_file, flags=flags)
    return RegistrySource(clients[url], ref.repository)


@dataclass
class Summary:
    """What a copy did, for people (``podinfra.images.cli.report``) and machines (``--json``)."""

    images: list[dict[str, Any]] = field(default_factory=list)
    bytes_sent: int = 0
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    manifests_pushed: int = 0
    images_present: int = 0  # complete in the destination already: only their tags were asked

    def add(self, other: Summary) -> None:
        """Count in what another copy did (copies run in threads, each with its own summary)."""
        self.images += other.images
        for counter in fields(self):
            if counter.name != "images":
                setattr(self, counter.name, getattr(self, counter.name) + getattr(other, counter.name))

    @property
    def changed(self) -> bool:
        return bool(self.blobs_uploaded or self.blobs_mounted or self.manifests_pushed)


def platform_name(platform: dict[str, str]) -> str:
    parts = [platform.get("os", ""), platform.get("architecture", "")]
    return "/".join(parts + ([platform["variant"]] if platform.get("variant") else []))


def _wanted(platform: dict[str, str], platforms: set[str] | None) -> bool:
    if not platforms:
        return True
    name = platform_name(platform)
    # linux/arm64 asks for linux/arm64/v8 too, as docker and skopeo read it.
    return name in platforms or "/".join(name.split("/")[:2]) in platforms


def document(manifest: Blob, what: str) -> dict[str, Any]:
    """A manifest's JSON, or one line saying it is none."""
    try:
        parsed = json.loads(manifest.data)
    except ValueError:
        raise RegistryError(f"{what} is not JSON: not an image manifest") from None
    if not isinstance(parsed, dict):
        raise RegistryError(f"{what} is not an image manifest")
    return parsed


def read_top(source: Source, reference: str) -> Blob:
    """The manifest or index `reference` names, verified when the reference is a digest."""
    top = source.manifest(reference)
    if reference.startswith("sha256:"):
        verified(top.data, reference, None, f"manifest {source.name}@{reference}")
    return top


def walk(
    source: Source, reference: str, platforms: set[str] | None = None, top: Blob | None = None
) -> tuple[Blob, list[tuple[Blob, dict[str, str]]]]:
    """Read and verify the image `reference` names: (top manifest, [(platform manifest, platform)]).

    With `platforms`, an index is rewritten to list only those platforms (so it gets a new digest).
    `top`: the top manifest when it was read already (`read_top`).
    """
    top = top or read_top(source, reference)
    if top.media_type in MANIFEST_TYPES:
        return top, [(top, {})]
    what = f"{source.name}:{reference}"
    if top.media_type not in INDEX_TYPES:
        raise RegistryError(f"{what} has media type {top.media_type or 'none'}, not an image")
    index = document(top, what)
    children = []
    try:
        for descriptor in index["manifests"]:
            if not _wanted(descriptor.get("platform", {}), platforms):
                continue
            child = source.manifest(descriptor["digest"])
            verified(
                child.data, descriptor["digest"], descriptor["size"], f"manifest {source.name}@{descriptor['digest']}"
            )
            children.append((Blob(descriptor["mediaType"], child.data), descriptor.get("platform", {})))
    except (KeyError, TypeError, AttributeError):
        raise RegistryError(f"{what}: its index lacks a manifest's digest, size or media type") from None
    if not children:
        raise RegistryError(f"{what} has none of the platforms {', '.join(sorted(platforms or ()))}")
    if len(children) != len(index["manifests"]):
        index["manifests"] = [d for d in index["manifests"] if _wanted(d.get("platform", {}), platforms)]
        top = Blob(top.media_type, encode(index))
    return top, children


def _platforms(top: Blob) -> list[str]:
    """The platforms an index lists (after `walk`, only those copied); none for a single manifest."""
    if top.media_type not in INDEX_TYPES:
        return []
    return [platform_name(d["platform"]) for d in json.loads(top.data)["manifests"] if d.get("platform")]


def blob_descriptors(manifest: Blob) -> list[dict[str, Any]]:
    """The config and layers of a platform manifest, each once (two layers may be the same bytes)."""
    parsed = document(manifest, f"manifest {manifest.digest}")
    try:
        listed = [parsed["config"], *parsed["layers"]]
        return list({str(d["digest"]): {**d, "size": int(d["size"])} for d in listed}.values())
    except (KeyError, TypeError, ValueError):
        raise RegistryError(f"manifest {manifest.digest} lacks a blob's digest or size: not an image") from None


@contextlib.contextmanager
def verified_blob(source: Source, descriptor: dict[str, Any], **reading: Any) -> Iterator[Verified]:
    """One blob of `source` as a stream checked (digest and size) as it is read, its source closed after;
    `reading`: `stop`, `meter`."""
    digest, size = descriptor["digest"], descriptor["size"]
    chunks = source.blob(digest)
    try:
        yield Verified(chunks, digest, size, f"blob {digest} of {source.name}", **reading)
    finally:
        getattr(chunks, "close", lambda: None)()


def copy_blob(source: Source, descriptor: dict[str, Any], dest: RegistryClient, repo: str, **reading: Any) -> None:
    """Stream one blob from `source` into `dest`, verified as it goes; `reading`: `stop`, `meter`."""
    with verified_blob(source, descriptor, **reading) as stream:
        dest.upload_blob(repo, descriptor["digest"], descriptor["size"], stream)


def _place(
    source: Source,
    descriptor: dict[str, Any],
    dest: RegistryClient,
    repo: str,
    mount_from: tuple[str, ...],
    stop: threading.Event,
    meter: Meter | None,
) -> str:
    """Make one blob present in `dest`: "skipped" (there already), "mounted" or "uploaded"."""
    digest = descriptor["digest"]
    if stop.is_set():
        raise Cancelled(f"blob {digest}: stopped")
    if dest.blob_exists(repo, digest):
        return "skipped"
    if any(dest.mount_blob(repo, digest, other) for other in mount_from if other != repo):
        return "mounted"
    if meter is not None:
        meter.add_total(descriptor["size"])
    copy_blob(source, descriptor, dest, repo, stop=stop, meter=meter)
    return "uploaded"


def copy_image(
    source: Source,
    reference: str,
    dest: RegistryClient,
    dest_repo: str,
    tag: str | None,
    summary: Summary,
    platforms: set[str] | None = None,
    mount_from: tuple[str, ...] = (),
    transfers: Transfers | None = None,
    meter: Meter | None = None,
) -> str:
    """Copy one image (index or single manifest) and tag it; returns the top manifest digest.

    When the destination's tag already names the source's digest, nothing more is read or sent: the
    image is complete there, since registries refuse a manifest whose blobs or manifests they lack and
    the tag is written last. (With `platforms` the index is rewritten, so the whole image is walked.)
    Blobs and platform manifests go through `transfers` (a pool of its own for this image when none is given).
    """
    top = read_top(source, reference)
    held = dest.manifest_digest(dest_repo, tag or top.digest)
    if not platforms and held == top.digest:
        summary.images_present += 1
        summary.images.append(_entry(source, reference, dest, dest_repo, tag, top, _platforms(top)))
        return top.digest
    top, children = walk(source, reference, platforms, top)
    descriptors = {d["digest"]: d for manifest, _ in children for d in blob_descriptors(manifest)}
    # Largest first: the copy ends when its longest transfer does, so that one starts at once.
    blobs = sorted(descriptors.values(), key=lambda d: -d["size"])
    with contextlib.ExitStack() as stack:
        transfers = transfers or stack.enter_context(Transfers())
        stop = transfers.stop
        place = [partial(_place, source, d, dest, dest_repo, mount_from, stop, meter) for d in blobs]
        digests = [d["digest"] for d in blobs]
        for (outcome, first), descriptor in zip(_run(transfers, dest, dest_repo, digests, place), blobs, strict=True):
            if not first or outcome == "skipped":  # there already, or another image of this run copied it
                summary.blobs_skipped += 1
            elif outcome == "mounted":
                summary.blobs_mounted += 1
            else:
                summary.blobs_uploaded += 1
                summary.bytes_sent += descriptor["size"]
        # The platform manifests once all their blobs are there, at once; the tag after them.
        manifests = [manifest for manifest, _ in children if manifest is not top]
        push = [partial(_push_manifest, dest, dest_repo, manifest, stop) for manifest in manifests]
        pushed = _run(transfers, dest, dest_repo, [manifest.digest for manifest in manifests], push)
        summary.manifests_pushed += sum(1 for outcome, first in pushed if first and outcome == "pushed")
    if held != top.digest:
        dest.push_manifest(dest_repo, tag or top.digest, top)
        summary.manifests_pushed += 1
    summary.images.append(_entry(source, reference, dest, dest_repo, tag, top, _platforms(top)))
    return top.digest


def _run(
    transfers: Transfers,
    dest: RegistryClient,
    repo: str,
    digests: Sequence[str],
    jobs: Sequence[Callable[[], str]],
) -> list[tuple[str, bool]]:
    """Each job (for the blob or manifest of its digest) through `transfers`: [(outcome, run by this call
    rather than by another image's)]."""
    started = [transfers.submit((dest.base_url, repo, d), job) for d, job in zip(digests, jobs, strict=True)]
    outcomes = results([future for future, _ in started], transfers.stop)
    return [(outcome, first) for outcome, (_, first) in zip(outcomes, started, strict=True)]


def _push_manifest(dest: RegistryClient, repo: str, manifest: Blob, stop: threading.Event) -> str:
    if stop.is_set():
        raise Cancelled(f"manifest {manifest.digest}: stopped")
    if dest.manifest_digest(repo, manifest.digest) == manifest.digest:
        return "present"
    dest.push_manifest(repo, manifest.digest, manifest)
    return "pushed"


def _entry(
    source: Source, reference: str, dest: RegistryClient, repo: str, tag: str | None, top: Blob, platforms: list[str]
) -> dict[str, Any]:
    where = f"{dest.host}/{repo}:{tag}" if tag else f"{dest.host}/{repo}"
    return {
        "source": f"{source.name}:{reference}",
        "destination": f"{where}@{top.digest}",
        "digest": top.digest,
        "media_type": top.media_type,
        "platforms": platforms,
    }
