"""The probe image of check 8: a static busybox as a one-platform OCI image, built on the control host.

No public image is the probe, and none can be pulled inside the gap: ``podinfra probe-image`` builds
``podinfra/probe:1`` from this machine's static busybox (Debian's ``busybox-static``) and pushes it
into the local registry, where nodes find it as ``registry.k8s.io/podinfra/probe:1`` through their
hosts.toml mirror, like pause. ``deploys/mirror.py`` does the same on every run.

    podinfra probe-image --to 10.0.0.2:5000 --ca-file ca.crt --username push --password-file push.pw

The image holds ``/bin/busybox`` only; containers run ``/bin/busybox sh -c ...``, so no applet links
are needed. One platform: this machine's.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from podinfra.errors import PodinfraError
from podinfra.images.oci import Image, build_image
from podinfra.images.reference import under

if TYPE_CHECKING:  # requests is not loaded for the inventory data's default image
    from podinfra.images.registry import RegistryClient

BUSYBOX = Path("/bin/busybox")
REPOSITORY = "podinfra/probe"
TAG = "1"
REFERENCE = f"registry.k8s.io/{REPOSITORY}:{TAG}"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
IMAGE_CONFIG: dict[str, object] = {
    "Entrypoint": ["/bin/busybox"],
    "Cmd": ["sleep", "3600"],
    "WorkingDir": "/",
    "Env": ["PATH=/bin"],
}


class ProbeImageError(PodinfraError, RuntimeError):
    """The probe image cannot be built here; the message names the fix."""


def build(busybox: Path = BUSYBOX) -> Image:
    """The probe image from `busybox` (a static binary). Reproducible: the same busybox, the same digest."""
    data = busybox.read_bytes() if busybox.is_file() else b""
    if not data.startswith(b"\x7fELF"):
        raise ProbeImageError(f"{busybox} is not a busybox binary: apt-get install busybox-static")
    if b"ld-linux" in data[:4096]:
        raise ProbeImageError(f"{busybox} is dynamically linked: apt-get install busybox-static")
    arch = ARCHITECTURES.get(platform.machine(), platform.machine())
    return build_image({"bin/busybox": data}, {"architecture": arch, "os": "linux"}, IMAGE_CONFIG, "oci")


def publish(client: RegistryClient, repository: str = REPOSITORY, image: Image | None = None) -> str:
    """Push the probe image (built here unless given) as ``REPOSITORY:1`` unless the registry holds it;
    returns its manifest digest, e.g. ``publish(RegistryClient("http://127.0.0.1:5100"))``."""
    image = image or build()
    if client.manifest_digest(repository, TAG) != image.manifest.digest:
        push(client, repository, image)
    return image.manifest.digest


def push(client: RegistryClient, repository: str, image: Image) -> None:
    """Push `image` as ``REPOSITORY:1``, its blobs first (each skipped when the registry holds it)."""
    for blob in image.blobs:
        client.push_blob(repository, blob.data, blob.digest)
    client.push_manifest(repository, TAG, image.manifest)


def run(args: argparse.Namespace) -> int:
    """`podinfra probe-image`: build it and push it into the local registry (``--to REGISTRY[/PREFIX]``)."""
    from podinfra.images.cli import destination

    client, prefix = destination(args)
    repository = under(prefix, REPOSITORY)
    digest = publish(client, repository, build(Path(args.busybox)))
    print(f"{client.host}/{repository}:{TAG}@{digest} (nodes pull it as {REFERENCE})")
    return 0
