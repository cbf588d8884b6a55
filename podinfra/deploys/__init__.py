"""podinfra's pyinfra deploys, to call from your own deploy files on the hosts you choose:

    from pyinfra import host
    from podinfra.deploys import local_registry, node_runtime, pause_mirror

    if "k8s_registry" in host.groups:
        local_registry()
        pause_mirror()
    if "k8s_workers" in host.groups:
        node_runtime()

or, without a deploy file: ``pyinfra INVENTORY podinfra.deploys.node_runtime --limit k8s_workers``.

Each reads its settings from the host's inventory data (``podinfra.data.settings``), checked before
any host is touched. ``deploys/*.py`` in podinfra's checkout are thin wrappers around them.
"""

from podinfra.deploys.groups import in_group
from podinfra.deploys.mirror import pause_mirror
from podinfra.deploys.node import node_runtime
from podinfra.deploys.registry import local_registry

__all__ = ["in_group", "local_registry", "node_runtime", "pause_mirror"]
