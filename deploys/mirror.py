"""Into the local registry on the host of group ``registry`` (or ``podinfra_registry_group``): the pause
tag of every Kubernetes version the nodes run, ``mirror_images`` and check 8's probe image, with
upstream's digests (``podinfra.deploys.mirror``).

    PODINFRA_LAB=NAME pyinfra -y inventories/lab.py deploys/mirror.py

Settings: ``podinfra.data.models.MirrorData``; a second run changes nothing.
"""

from podinfra.deploys import in_group, pause_mirror

if in_group("podinfra_registry_group", "registry"):
    pause_mirror()
