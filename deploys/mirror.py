"""The pause image(s) for the inventory's Kubernetes version in the local registry, with
upstream's digests, on the hosts of group ``registry``.

    PODINFRA_LAB=NAME pyinfra -y inventories/lab.py deploys/mirror.py

The copy runs from the control host (the side that reaches upstream) into the registry that
``deploys/registry.py`` made, as its ``push`` user, trusting podinfra's CA. What the registry
holds is read first, over HTTPS from the control host: an image whose tag already names
upstream's digest is a no-op, so a second run reports no change. Host data: see
``podinfra.hostdata.kubernetes_version`` and ``mirror_settings`` (``pause_source``,
``pause_source_insecure``, ``pause_source_ca``, ``registry_prefix``, ``mirror_images``) and
``registry_push_user`` ("push").
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FunctionCommand, operation
from pyinfra.api.exceptions import OperationError

from podinfra.hostdata import MirrorSettings, RegistrySettings, fail, mirror_settings, registry_settings
from podinfra.mirror import RegistrySource, Summary, copy_image, registry_source
from podinfra.reference import Reference
from podinfra.registry import RegistryClient, RegistryError


def _copy(source: RegistrySource, image: Reference, dest: RegistryClient, repo: str) -> None:
    summary = Summary()
    copy_image(source, image.reference, dest, repo, image.tag, summary)
    print(f"    {image} -> {dest.host}/{repo}: {summary.blobs_uploaded} blobs, {summary.bytes_sent} bytes sent")


@operation()
def image_mirrored(image: Reference, mirror: MirrorSettings, registry: RegistrySettings, user: str):
    """Copy `image` into the local registry unless its tag already holds upstream's digest."""
    source = registry_source(image, mirror.source, mirror.source_insecure, str(mirror.source_ca or "") or None)
    dest = RegistryClient(
        f"https://{registry.address}:{registry.port}",
        ca_file=str(registry.ca) if registry.ca else None,
        username=user,
        password=registry.users[user],
    )
    repo = f"{mirror.prefix}/{image.repository}" if mirror.prefix else image.repository
    try:
        wanted = source.manifest(image.reference).digest
        held = dest.manifest_digest(repo, image.tag or wanted)
    except RegistryError as e:
        raise OperationError(str(e)) from None
    if held == wanted:
        host.noop(f"{dest.host}/{repo}:{image.tag} already is {wanted}")
        return
    yield FunctionCommand(_copy, (source, image, dest, repo), {})


if "registry" in host.groups:
    _mirror, _registry = mirror_settings(host), registry_settings(host)
    _user = host.data.get("registry_push_user", "push")
    if _user not in _registry.users:
        raise fail(host, "registry_push_user", "name a user of registry_users", _user)
    for _image in _mirror.images:
        image_mirrored(
            name=f"{_image} in the local registry", image=_image, mirror=_mirror, registry=_registry, user=_user
        )
