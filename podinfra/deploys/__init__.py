"""podinfra's pyinfra deploys, to call from your own deploy files on the hosts you choose:

    from podinfra.deploys import registry_then_nodes

    registry_then_nodes(registry="k8s_registry", nodes="k8s_workers")

which runs ``local_registry`` and ``pause_mirror`` on the registry's hosts, then ``node_runtime`` on the
nodes, in one run on a fresh fleet (``podinfra.deploys.ordered`` says why that takes an operation every
host shares); or one at a time: ``pyinfra INVENTORY podinfra.deploys.node_runtime --limit k8s_workers``.

Each reads its settings from the host's inventory data (``podinfra.data.settings``), checked before
any host is touched. ``deploys/*.py`` in podinfra's checkout are thin wrappers around them.
"""

from podinfra.deploys.groups import in_group
from podinfra.deploys.mirror import pause_mirror
from podinfra.deploys.node import node_runtime
from podinfra.deploys.ordered import registry_then_nodes
from podinfra.deploys.registry import local_registry

__all__ = ["in_group", "local_registry", "node_runtime", "pause_mirror", "registry_then_nodes"]
