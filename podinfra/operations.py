"""podinfra's pyinfra operations, at the import path operators use (they live in ``podinfra.node.operations``
and ``podinfra.node.restart``).

from podinfra.operations import config_file, pause_pinned
"""

from podinfra.node.operations import (
    config_file,
    crio_old_pause_released,
    crio_pause_pulled,
    failed,
    image_mirrored,
    old_pause_released,
    pause_pinned,
    probe_image_pushed,
)
from podinfra.node.restart import containerd_restarted, crio_restarted

__all__ = [
    "config_file",
    "containerd_restarted",
    "crio_old_pause_released",
    "crio_pause_pulled",
    "crio_restarted",
    "failed",
    "image_mirrored",
    "old_pause_released",
    "pause_pinned",
    "probe_image_pushed",
]
