"""Copy images into a registry exactly: every platform, digests kept, each byte verified before it
is committed, the tag written last so a failure never leaves a tag on an incomplete image."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from podinfra.oci import INDEX_TYPES, MANIFEST_TYPES, Blob, digest_of, encode
from podinfra.reference import Reference
from podinfra.registry import RegistryClient, RegistryError
from podinfra.versions import UPSTREAM


class IntegrityError(RegistryError):
    """Bytes that do not match their digest or size."""


def verified(data: bytes, digest: str, size: int | None, what: str) -> bytes:
    actual = digest_of(data)
    if actual != digest or (size is not None and len(data) != size):
        raise IntegrityError(
            f"{what}: expected {digest} ({size} bytes), got {actual} ({len(data)} bytes); refusing it, nothing tagged"
        )
    return data


class Source(Protocol):
    """Where an image's manifests and blobs come from: a registry or an archive."""

    @property
    def name(self) -> str: ...

    def manifest(self, reference: str) -> Blob: ...

    def blob(self, digest: str) -> bytes: ...


@dataclass
class RegistrySource:
    client: RegistryClient
    repository: str

    @property
    def name(self) -> str:
        return f"{self.client.host}/{self.repository}"

    def manifest(self, reference: str) -> Blob:
        return self.client.get_manifest(self.repository, reference)

    def blob(self, digest: str) -> bytes:
        return self.client.get_blob(self.repository, digest)


def registry_source(
    ref: Reference, upstream: str = UPSTREAM, insecure: bool = False, ca_file: str | None = None
) -> RegistrySource:
    """Read `ref` from its registry, or, for registry.k8s.io images, from `upstream` (a mirror of it)."""
    if ref.registry != UPSTREAM:
        return RegistrySource(RegistryClient(f"https://{ref.registry}"), ref.repository)
    client = RegistryClient(f"{'http' if insecure else 'https'}://{upstream}", ca_file=ca_file)
    return RegistrySource(client, ref.repository)


@dataclass
class Summary:
    """What a copy did, for people (`render`) and machines (`--json`)."""

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
    if top.media_type not in INDEX_TYPES:
        raise RegistryError(f"{source.name}:{reference} has media type {top.media_type!r}, not an image")
    index = json.loads(top.data)
    children = []
    for descriptor in index["manifests"]:
        if not _wanted(descriptor.get("platform", {}), platforms):
            continue
        child = source.manifest(descriptor["digest"])
        verified(child.data, descriptor["digest"], descriptor["size"], f"manifest {source.name}@{descriptor['digest']}")
        children.append((Blob(descriptor["mediaType"], child.data), descriptor.get("platform", {})))
    if not children:
        raise RegistryError(f"{source.name}:{reference} has none of the platforms {sorted(platforms or ())}")
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
    document = json.loads(manifest.data)
    return [document["config"], *document["layers"]]


def copy_image(
    source: Source,
    reference: str,
    dest: RegistryClient,
    dest_repo: str,
    tag: str | None,
    summary: Summary,
    platforms: set[str] | None = None,
    mount_from: tuple[str, ...] = (),
    progress: Callable[[str], None] = lambda _: None,
) -> str:
    """Copy one image (index or single manifest) and tag it; returns the top manifest digest.

    When the destination's tag already names the source's digest, nothing more is read or sent: the
    image is complete there, since registries refuse a manifest whose blobs or manifests they lack and
    the tag is written last. (With `platforms` the index is rewritten, so the whole image is walked.)
    """
    top = read_top(source, reference)
    if not platforms and dest.manifest_digest(dest_repo, tag or top.digest) == top.digest:
        summary.images_present += 1
        summary.images.append(_entry(source, reference, dest, dest_repo, tag, top, _platforms(top)))
        return top.digest
    top, children = walk(source, reference, platforms, top)
    for manifest, platform in children:
        for descriptor in blob_descriptors(manifest):
            digest, size = descriptor["digest"], descriptor["size"]
            if dest.blob_exists(dest_repo, digest):
                summary.blobs_skipped += 1
            elif any(dest.mount_blob(dest_repo, digest, other) for other in mount_from if other != dest_repo):
                summary.blobs_mounted += 1
            else:
                data = verified(source.blob(digest), digest, size, f"blob {digest} of {source.name}")
                progress(f"  uploading {digest[:19]} ({size} bytes, {platform_name(platform) or 'image'})")
                summary.bytes_sent += dest.push_blob(dest_repo, data, digest)
                summary.blobs_uploaded += 1
        if manifest is not top and dest.manifest_digest(dest_repo, manifest.digest) != manifest.digest:
            dest.push_manifest(dest_repo, manifest.digest, manifest)
            summary.manifests_pushed += 1
    if dest.manifest_digest(dest_repo, tag or top.digest) != top.digest:
        dest.push_manifest(dest_repo, tag or top.digest, top)
        summary.manifests_pushed += 1
    summary.images.append(_entry(source, reference, dest, dest_repo, tag, top, _platforms(top)))
    return top.digest


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
