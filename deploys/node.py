"""Every node of the inventory group ``nodes`` (or the one ``podinfra_node_group`` names) starts its
pod sandboxes from the local registry's pause image: ``podinfra.deploys.node``.

    PODINFRA_LAB=NAME pyinfra -y inventories/lab.py deploys/node.py
    pyinfra -y inventories/mine.py deploys/node.py --data podinfra_node_group=k8s_workers

Settings: ``podinfra.data.settings.node_settings``. All data is checked before any host is touched.
"""

from podinfra.deploys import in_group, node_runtime

if in_group("podinfra_node_group", "nodes"):
    node_runtime()
