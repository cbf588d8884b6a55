"""The lab's probe image for `podinfra check`: Debian's static busybox as a one-platform OCI image.

Published to the lab's upstream as ``podinfra/probe:1``, i.e. ``registry.k8s.io/podinfra/probe:1``
for nodes, which reach it through the local registry once it is mirrored:

    podinfra mirror --image registry.k8s.io/podinfra/probe:1 --source 127.0.0.1:5100 --source-insecure ...

The image holds ``/bin/busybox`` only; containers run ``/bin/busybox sh -c ...``, so no applet
links are needed. linux/amd64 only: the lab's nodes are this machine.
"""

from __future__ import annotations

from pathlib import Path

from podinfra.lab.state import LabError
from podinfra.oci import build_image
from podinfra.registry import RegistryClient

BUSYBOX = Path("/bin/busybox")
REPOSITORY = "podinfra/probe"
TAG = "1"
REFERENCE = f"registry.k8s.io/{REPOSITORY}:{TAG}"
PLATFORM = {"architecture": "amd64", "os": "linux"}
IMAGE_CONFIG: dict[str, object] = {
    "Entrypoint": ["/bin/busybox"],
    "Cmd": ["sleep", "3600"],
    "WorkingDir": "/",
    "Env": ["PATH=/bin"],
}


def publish(client: RegistryClient, busybox: Path = BUSYBOX) -> str:
    """Push ``podinfra/probe:1`` built from `busybox` (a static binary); returns the manifest digest.

    Reproducible: the same busybox gives the same digest, so a second publish uploads nothing.

    >>> publish(RegistryClient("http://127.0.0.1:5100"))  # doctest: +SKIP
    'sha256:...'
    """
    if not busybox.is_file():
        raise LabError(f"{busybox} is missing: apt-get install busybox-static (or run ./run demo)")
    image = build_image({"bin/busybox": busybox.read_bytes()}, PLATFORM, IMAGE_CONFIG, "oci")
    for blob in image.blobs:
        client.push_blob(REPOSITORY, blob.data, blob.digest)
    client.push_manifest(REPOSITORY, TAG, image.manifest)
    return image.manifest.digest
