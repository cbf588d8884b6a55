"""Offline archives: an OCI image layout in a tar, written on a connected machine and carried in.

``index.json`` lists each image with ``io.containerd.image.name`` (the full upstream name, as
``ctr import`` reads it) and ``org.opencontainers.image.ref.name`` (the tag).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podinfra.mirror import IntegrityError, Source, blob_descriptors, verified, walk
from podinfra.oci import OCI_INDEX, OCI_MANIFEST, Blob, digest_of, encode
from podinfra.reference import Reference

NAME_ANNOTATION = "io.containerd.image.name"
TAG_ANNOTATION = "org.opencontainers.image.ref.name"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def export(
    images: list[tuple[Reference, Source]], out: Path, platforms: set[str] | None = None
) -> list[dict[str, Any]]:
    """Write every image (all platforms unless limited) with its blobs; returns the index entries."""
    written: set[str] = set()
    entries: list[dict[str, Any]] = []
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}\n')

        def put(data: bytes) -> None:
            digest = digest_of(data)
            if digest not in written:
                written.add(digest)
                _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)

        for ref, source in images:
            top, children = walk(source, ref.reference, platforms)
            for manifest, _ in children:
                for descriptor in blob_descriptors(manifest):
                    put(verified(source.blob(descriptor["digest"]), descriptor["digest"], descriptor["size"], str(ref)))
                put(manifest.data)
            put(top.data)
            annotations = {NAME_ANNOTATION: str(ref)}
            if ref.tag:
                annotations[TAG_ANNOTATION] = ref.tag
            entries.append(top.descriptor(annotations=annotations))
        _add(tar, "index.json", encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    partial.rename(out)
    return entries


@dataclass
class ArchiveSource:
    """Blobs read from an archive, each already checked against its digest."""

    path: Path
    blobs: dict[str, bytes]

    @property
    def name(self) -> str:
        return self.path.name

    def manifest(self, reference: str) -> Blob:
        data = self.blob(reference)
        document = json.loads(data)
        media_type = document.get("mediaType") or (OCI_INDEX if "manifests" in document else OCI_MANIFEST)
        return Blob(media_type, data)

    def blob(self, digest: str) -> bytes:
        try:
            return self.blobs[digest]
        except KeyError:
            raise IntegrityError(f"archive {self.name} lacks {digest}: it is incomplete, export it again") from None


def load(path: Path) -> tuple[ArchiveSource, list[dict[str, Any]]]:
    """Read and verify the whole archive before anything is pushed; returns (source, image entries)."""
    blobs: dict[str, bytes] = {}
    index: dict[str, Any] | None = None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if member.name == "index.json":
                    index = json.loads(data)
                elif member.name.startswith("blobs/sha256/"):
                    digest = "sha256:" + member.name.rsplit("/", 1)[1]
                    blobs[digest] = verified(data, digest, member.size, f"archive {path.name}: {member.name}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise IntegrityError(f"archive {path} is truncated or damaged ({exc}); nothing was pushed") from exc
    if index is None:
        raise IntegrityError(f"{path} is not an OCI image layout archive (no index.json)")
    source = ArchiveSource(path, blobs)
    entries = list(index.get("manifests", []))
    for entry in entries:
        _, children = walk(source, entry["digest"])
        for manifest, _ in children:
            for descriptor in blob_descriptors(manifest):
                source.blob(descriptor["digest"])
    return source, entries
