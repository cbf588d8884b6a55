"""podinfra's pyinfra operations, at the import path operators use (they live in ``podinfra.node.operations``).

from podinfra.operations import config_file, pause_pinned
"""

from podinfra.node.operations import (
    config_file,
    containerd_restarted,
    failed,
    image_mirrored,
    old_pause_released,
    pause_pinned,
    probe_image_pushed,
)

__all__ = [
    "config_file",
    "containerd_restarted",
    "failed",
    "image_mirrored",
    "old_pause_released",
    "pause_pinned",
    "probe_image_pushed",
]
