"""The registry, its mirror and the nodes in one pyinfra run, in that order, on a fresh fleet:

    from podinfra.deploys import registry_then_nodes

    registry_then_nodes(registry="k8s_registry", nodes="k8s_workers")

pyinfra orders each host's operations as its deploy file calls them, but the operations of different
hosts only where they share one: a deploy file that calls ``local_registry()`` for the registry's host
and ``node_runtime()`` for the nodes' interleaves the two, and a node would pull its pause image from
a registry that is not there yet. Here every host calls one operation at one place (``registry_first``,
which changes nothing), so all of the registry's operations run before any of the nodes'.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.api.operation import operation
from pyinfra.context import host

from podinfra.deploys.groups import group_hosts
from podinfra.deploys.mirror import pause_mirror
from podinfra.deploys.node import node_runtime
from podinfra.deploys.registry import local_registry


@operation(is_idempotent=True)
def registry_first() -> Generator[Any]:
    """Nothing, on every host: the one operation the registry's and the nodes' hosts share, which pyinfra
    runs after the registry's operations and before the nodes'."""
    host.noop("the registry's operations run before the nodes'")
    yield from ()


@deploy("podinfra registry then nodes")
def registry_then_nodes(registry: str | None = None, nodes: str | None = None) -> None:
    """``local_registry`` and ``pause_mirror`` on the hosts of group `registry`, then ``node_runtime`` on
    the hosts of group `nodes` (defaults: host data ``podinfra_registry_group`` and ``podinfra_node_group``,
    else "registry" and "nodes"); a group with no hosts stops the run with one line.

    **Example:**

    .. code:: python

        from podinfra.deploys import registry_then_nodes

        registry_then_nodes(registry="k8s_registry", nodes="k8s_workers")
    """
    registry_hosts = group_hosts("podinfra_registry_group", "registry", registry, "registry_then_nodes(registry=GROUP)")
    node_hosts = group_hosts("podinfra_node_group", "nodes", nodes, "registry_then_nodes(nodes=GROUP)")
    if host in registry_hosts:
        local_registry()
        pause_mirror(nodes=nodes)
    registry_first(name="the registry's operations before the nodes'")
    if host in node_hosts:
        node_runtime()
