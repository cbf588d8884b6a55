"""Into the local registry, with upstream's digests: the pause tag of every Kubernetes version the
inventory's nodes run (several during an upgrade; a node's ``pause_tag`` where it gives one),
``mirror_images``, and check 8's probe image.

The copy runs from the control host (the side that reaches upstream) into the registry that
``deploys/registry.py`` made, as its push user, trusting podinfra's CA. What the registry holds is
asked first: an image whose tag already names upstream's digest is a no-op, so a second run
reports no change. Settings: ``podinfra.data.models.MirrorData``; the versions come from the hosts
of the nodes' group: ``pause_mirror(nodes="k8s_workers")``, else the one ``podinfra_node_group`` names
(default ``nodes``). A group with no hosts stops the run with one line, as ``in_group`` does.
"""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api.deploy import deploy
from pyinfra.context import host

from podinfra.data.settings import RegistrySettings, mirror_settings, node_pause_tags, registry_settings
from podinfra.deploys.groups import group_hosts
from podinfra.images.probe_image import REFERENCE, ProbeImageError, build
from podinfra.images.registry import RegistryClient
from podinfra.node.operations import image_mirrored, probe_image_pushed


@deploy("podinfra mirror")
def pause_mirror(nodes: str | None = None, registry: RegistrySettings | None = None) -> None:
    """Mirror what the nodes of group `nodes` need into the local registry on this host: the pause tag
    of every version they run (several, mid-upgrade) and check 8's probe image.

    + nodes: the nodes' inventory group; default: host data ``podinfra_node_group``, else "nodes"
    + registry: the registry's settings; default: this host's data

    **Example:**

    .. code:: python

        from podinfra.deploys import pause_mirror

        pause_mirror(nodes="k8s_workers")
    """
    hosts = group_hosts("podinfra_node_group", "nodes", nodes, "pause_mirror(nodes=GROUP)")
    mirror = mirror_settings(host, node_pause_tags(hosts))
    registry = registry or registry_settings(host)
    dest = RegistryClient(
        registry.url,
        ca_file=str(registry.ca) if registry.ca else None,
        username=registry.push_user,
        password=registry.users[registry.push_user],
        flags=("registry_tls_ca (or podinfra's CA in podinfra_pki_dir)", None),
    )
    for image in mirror.images:
        image_mirrored(name=f"{image} in the local registry", image=image, mirror=mirror, dest=dest)
    if not any(n.data.get("check_probe_image", REFERENCE) == REFERENCE for n in hosts):
        return
    try:
        probe = build()
    except ProbeImageError as e:
        logger.warning(f"{host.print_prefix}check 8's probe image is not mirrored: {e}")
        return
    probe_image_pushed(
        name=f"{REFERENCE} (check 8's probe) in the local registry", image=probe, mirror=mirror, dest=dest
    )
