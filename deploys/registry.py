"""The local registry on the host of inventory group ``registry`` (or the one ``podinfra_registry_group``
names): docker-registry behind nginx, HTTPS from podinfra's CA, and only the push user may write
(``podinfra.deploys.registry``).

    PODINFRA_LAB=NAME pyinfra -y inventories/lab.py deploys/registry.py

Settings: ``podinfra.data.models.RegistryData``. Bad data stops the run before any host is changed.
"""

from podinfra.deploys import in_group, local_registry

if in_group("podinfra_registry_group", "registry"):
    local_registry()
