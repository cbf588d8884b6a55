"""podinfra's pyinfra facts, at the import path operators use (they live in ``podinfra.node.facts``).

from podinfra.facts import ContainerdDaemon, ContainerdVersion
"""

from podinfra.node.facts import (
    ContainerdDaemon,
    ContainerdImages,
    ContainerdVersion,
    ContainerImages,
    CrioConfigFiles,
    CrioImage,
    CrioRunningConfig,
    CrioVersion,
    HttpStatus,
    NodeRuntime,
)

__all__ = [
    "ContainerImages",
    "ContainerdDaemon",
    "ContainerdImages",
    "ContainerdVersion",
    "CrioConfigFiles",
    "CrioImage",
    "CrioRunningConfig",
    "CrioVersion",
    "HttpStatus",
    "NodeRuntime",
]
