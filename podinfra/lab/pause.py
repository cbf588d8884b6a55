"""The lab's stand-in for registry.k8s.io/pause: built from pause.c, two platforms per tag."""

from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

from podinfra.images.oci import Blob, Image, build_image, build_index
from podinfra.images.registry import RegistryClient

SOURCE = resources.files("podinfra.lab") / "pause.c"
REPOSITORY = "pause"
COMPILERS = {"amd64": "gcc", "arm64": "aarch64-linux-gnu-gcc"}
PLATFORMS = {
    "amd64": {"architecture": "amd64", "os": "linux"},
    "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
}
# Older tags are published with Docker schema 2 media types and newer ones as OCI, as
# upstream did, so mirroring meets both kinds.
TAGS = {
    "3.6": "docker",
    "3.7": "docker",
    "3.8": "docker",
    "3.9": "docker",
    "3.10": "oci",
    "3.10.1": "oci",
    "3.10.2": "oci",
}
IMAGE_CONFIG: dict[str, object] = {"User": "65535:65535", "Entrypoint": ["/pause"], "WorkingDir": "/"}


def compile_pause(tag: str, arch: str, out_dir: Path) -> bytes:
    """A static, stripped pause binary for `arch`, stamped with `tag` so each tag differs."""
    out = out_dir / f"pause-{tag}-{arch}"
    if not out.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [COMPILERS[arch], "-static", "-Os", "-s", f'-DPAUSE_VERSION="{tag}"', "-o", str(out), str(SOURCE)],
            check=True,
        )
    return out.read_bytes()


def build_tag(tag: str, out_dir: Path) -> tuple[Blob, list[Image]]:
    flavour = TAGS[tag]
    images = [
        build_image({"pause": compile_pause(tag, arch, out_dir)}, PLATFORMS[arch], IMAGE_CONFIG, flavour)
        for arch in PLATFORMS
    ]
    return build_index(images, flavour), images


def publish(client: RegistryClient, out_dir: Path) -> dict[str, str]:
    """Push every tag's index; returns tag -> index digest."""
    published = {}
    for tag in TAGS:
        index, images = build_tag(tag, out_dir)
        for image in images:
            for blob in image.blobs:
                client.push_blob(REPOSITORY, blob.data, blob.digest)
            client.push_manifest(REPOSITORY, image.manifest.digest, image.manifest)
        client.push_manifest(REPOSITORY, tag, index)
        published[tag] = index.digest
    return published
