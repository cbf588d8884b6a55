"""OCI and Docker schema 2 media types, digests, and deterministic image assembly."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ALL_MANIFEST_TYPES = INDEX_TYPES + MANIFEST_TYPES

# The media types of one image family, so an index never mixes OCI and Docker children.
FLAVOURS = {
    "oci": (OCI_INDEX, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    "docker": (DOCKER_LIST, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """Bytes with the descriptor that names them."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def encode(document: Mapping[str, object]) -> bytes:
    """Serialise a manifest or config once; its digest is over exactly these bytes."""
    return json.dumps(document, indent=2, sort_keys=False).encode() + b"\n"


def single_file_layer(path: str, content: bytes, media_type: str) -> tuple[Blob, str]:
    """A reproducible gzip layer holding one executable file; returns (layer, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = len(content), 0o755, 0
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return Blob(media_type, gzip.compress(tar_bytes, mtime=0)), digest_of(tar_bytes)


@dataclass(frozen=True)
class Image:
    """One platform's manifest with its config and layers."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    platform: dict[str, str]

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


def build_image(files: dict[str, bytes], platform: dict[str, str], config: dict[str, object], flavour: str) -> Image:
    """Assemble a one-layer-per-file image for `platform` in the `oci` or `docker` flavour."""
    _, manifest_type, config_type, layer_type = FLAVOURS[flavour]
    layers, diff_ids = [], []
    for path, content in files.items():
        layer, diff_id = single_file_layer(path, content, layer_type)
        layers.append(layer)
        diff_ids.append(diff_id)
    config_doc = {
        "architecture": platform["architecture"],
        "os": platform["os"],
        **({"variant": platform["variant"]} if "variant" in platform else {}),
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_blob = Blob(config_type, encode(config_doc))
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    return Image(Blob(manifest_type, encode(manifest)), config_blob, tuple(layers), platform)


def build_index(images: list[Image], flavour: str) -> Blob:
    index_type = FLAVOURS[flavour][0]
    document = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [image.manifest.descriptor(platform=image.platform) for image in images],
    }
    return Blob(index_type, encode(document))
