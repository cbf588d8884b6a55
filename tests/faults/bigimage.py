"""Images with layers of any size, pushed to a registry as streams (never whole in memory), the same
bytes for the same seed."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from podinfra.images import oci
from podinfra.images.registry import RegistryClient
from podinfra.images.transfer import Verified

MIB = 1024**2


def seeded(size: int, seed: int) -> Iterator[bytes]:
    """`size` bytes made from one random MiB of `seed`, each MiB made distinct by its number."""
    base = random.Random(seed).randbytes(MIB)
    for number, start in enumerate(range(0, size, MIB)):
        yield (number.to_bytes(8, "big") + base[8:])[: min(MIB, size - start)]


def push_layer(client: RegistryClient, repo: str, size: int, seed: int) -> dict[str, object]:
    digest = hashlib.sha256()
    for chunk in seeded(size, seed):
        digest.update(chunk)
    descriptor = {"mediaType": oci.OCI_LAYER, "digest": f"sha256:{digest.hexdigest()}", "size": size}
    if not client.blob_exists(repo, str(descriptor["digest"])):
        body = Verified(seeded(size, seed), str(descriptor["digest"]), size, "layer")
        client.upload_blob(repo, str(descriptor["digest"]), size, body)
    return descriptor


def push_image(client: RegistryClient, repo: str, tag: str, sizes: list[int], seed: int = 0) -> oci.Blob:
    """One linux/amd64 OCI image whose layers have `sizes` (bytes); returns its manifest."""
    layers = [push_layer(client, repo, size, seed * 1000 + n) for n, size in enumerate(sizes)]
    config = oci.Blob(oci.OCI_CONFIG, oci.encode({"architecture": "amd64", "os": "linux", "seed": seed}))
    client.push_blob(repo, config.data)
    manifest = oci.Blob(
        oci.OCI_MANIFEST,
        oci.encode(
            {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config.descriptor(), "layers": layers}
        ),
    )
    client.push_manifest(repo, tag, manifest)
    return manifest
