"""The base of the errors podinfra's commands report in one line (``podinfra: MESSAGE``, exit 2),
so that the CLI can catch them without importing every module that raises one."""


class PodinfraError(Exception):
    """A failure whose message names the fix; no traceback is shown for it."""


class ConfigError(PodinfraError, ValueError):
    """Settings or a node file podinfra will not write; the message names the fix."""
