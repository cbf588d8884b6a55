"""Offline archives: an OCI image layout in a tar, written on a connected machine and carried in.

``index.json`` lists each image with ``io.containerd.image.name`` (the full upstream name, as
``ctr import`` reads it) and ``org.opencontainers.image.ref.name`` (the tag).

Members are written and read as streams, so an archive of any size takes little memory: `export`
copies each blob from its source into the tar as it arrives (verified on the way), and `load`
hashes every member once before anything is pushed, then serves blobs from their place in the
file.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from podinfra.errors import PodinfraError
from podinfra.images.mirror import Source, blob_descriptors, document, verified_blob, walk
from podinfra.images.oci import OCI_INDEX, OCI_MANIFEST, Blob, digest_of, encode
from podinfra.images.reference import Reference
from podinfra.images.registry import READ
from podinfra.images.transfer import IntegrityError, Meter, Verified

NAME_ANNOTATION = "io.containerd.image.name"
TAG_ANNOTATION = "org.opencontainers.image.ref.name"
MANIFEST_LIMIT = 4 * 1024**2  # registries refuse larger manifests; a larger member named as one is not one

Meters = Callable[[str], AbstractContextManager[Meter | None]]


class ArchiveError(PodinfraError):
    """An archive that cannot be read or written; one line naming it."""


def _add(tar: tarfile.TarFile, name: str, size: int, data: IO[bytes] | Verified) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    tar.addfile(info, data)  # type: ignore[arg-type,unused-ignore]  # tarfile reads it with read(n) only


def export(
    images: list[tuple[Reference, Source]],
    out: Path,
    platforms: set[str] | None = None,
    meters: Meters = lambda _: nullcontext(None),
) -> list[dict[str, Any]]:
    """Write every image (all platforms unless limited) with its blobs; returns the index entries.
    The tar is written as OUT.partial and renamed when complete; on any failure (Ctrl-C too) it is removed.
    `meters`: a progress meter per image name."""
    written: set[str] = set()
    entries: list[dict[str, Any]] = []
    partial = out.with_name(out.name + ".partial")
    try:
        with tarfile.TarFile(partial, "w", format=tarfile.PAX_FORMAT, copybufsize=READ) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}\n')

            def put(data: bytes) -> None:
                digest = digest_of(data)
                if digest not in written:
                    written.add(digest)
                    _add_bytes(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)

            for ref, source in images:
                top, children = walk(source, ref.reference, platforms)
                with meters(str(ref)) as meter:
                    for manifest, _ in children:
                        for descriptor in blob_descriptors(manifest):
                            digest, size = descriptor["digest"], descriptor["size"]
                            if digest in written:
                                continue
                            if meter is not None:
                                meter.add_total(size)
                            with verified_blob(source, descriptor, meter=meter) as stream:
                                _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", size, stream)
                            written.add(digest)
                        put(manifest.data)
                put(top.data)
                annotations = {NAME_ANNOTATION: str(ref)}
                if ref.tag:
                    annotations[TAG_ANNOTATION] = ref.tag
                entries.append(top.descriptor(annotations=annotations))
            _add_bytes(tar, "index.json", encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
        partial.rename(out)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ArchiveError(f"cannot write {out}: {exc.strerror or exc}") from exc
        raise
    return entries


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    _add(tar, name, len(data), io.BytesIO(data))


@dataclass
class ArchiveSource:
    """Blobs read from their place in an archive (each checked against its digest by `load` already, and
    again as it streams out)."""

    path: Path
    members: dict[str, tuple[int, int]]  # digest -> (offset, size) of its bytes in the tar

    @property
    def name(self) -> str:
        return self.path.name

    def _where(self, digest: str) -> tuple[int, int]:
        try:
            return self.members[digest]
        except KeyError:
            raise IntegrityError(f"archive {self.name} lacks {digest}: it is incomplete, export it again") from None

    def manifest(self, reference: str) -> Blob:
        if self._where(reference)[1] > MANIFEST_LIMIT:
            raise IntegrityError(f"archive {self.name}: {reference} is too large to be a manifest")
        data = b"".join(self.blob(reference))
        parsed = document(Blob("", data), f"archive {self.name}: {reference}")
        media_type = parsed.get("mediaType") or (OCI_INDEX if "manifests" in parsed else OCI_MANIFEST)
        return Blob(str(media_type), data)

    def blob(self, digest: str) -> Iterator[bytes]:
        offset, size = self._where(digest)
        with self.path.open("rb") as file:
            file.seek(offset)
            while size > 0 and (data := file.read(min(READ, size))):
                size -= len(data)
                yield data


def load(path: Path) -> tuple[ArchiveSource, list[dict[str, Any]]]:
    """Read and verify the whole archive before anything is pushed; returns (source, image entries).
    Every member is hashed as it streams past; only the index is kept in memory."""
    if not path.exists():
        raise ArchiveError(f"archive {path}: no such file")
    if not path.is_file():
        raise ArchiveError(f"archive {path} is not a file")
    members: dict[str, tuple[int, int]] = {}
    index: Any = None
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file's member always has one
                if member.name == "index.json":
                    index = _index(path, stream.read(MANIFEST_LIMIT))
                elif member.name.startswith("blobs/sha256/"):
                    digest = "sha256:" + member.name.rsplit("/", 1)[1]
                    Verified(_chunks(stream), digest, member.size, f"archive {path.name}: {member.name}").drain()
                    members[digest] = (member.offset_data, member.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise IntegrityError(f"archive {path} is truncated or damaged ({exc}); nothing was pushed") from exc
    if index is None:
        raise IntegrityError(f"{path} is not an OCI image layout archive (no index.json)")
    source = ArchiveSource(path, members)
    entries = list(index.get("manifests", []))
    for entry in entries:
        if not isinstance(entry, dict) or "digest" not in entry:
            raise IntegrityError(f"archive {path}: index.json lists an image without a digest")
        if not isinstance(entry.get("annotations"), dict) or NAME_ANNOTATION not in entry["annotations"]:
            raise ArchiveError(
                f"archive {path}: image {entry['digest']} has no {NAME_ANNOTATION} annotation, so podinfra cannot "
                "tell where it goes: import archives written by `podinfra export`"
            )
        _, children = walk(source, str(entry["digest"]))
        for manifest, _ in children:
            for descriptor in blob_descriptors(manifest):
                source._where(descriptor["digest"])
    return source, entries


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while data := stream.read(READ):
        yield data


def _index(path: Path, data: bytes) -> dict[str, Any]:
    try:
        index = json.loads(data)
    except ValueError:
        raise IntegrityError(f"archive {path}: index.json is not JSON") from None
    if not isinstance(index, dict):
        raise IntegrityError(f"archive {path}: index.json is not an image index")
    return index
