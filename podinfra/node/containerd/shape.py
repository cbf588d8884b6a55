"""Where each containerd release and each config version keep the sandbox image and the registry
``config_path`` (containerd ``docs/cri/config.md``, ``RELEASES.md``, ``version/version.go``).

Config version 2 is containerd 1.x's. Version 3 came with 2.0, which split the CRI plugin into
``io.containerd.cri.v1.images`` and ``.runtime``; version 4 came with 2.3.0 ("4 -> v2.3.0" in
RELEASES.md; Kubespray uses the same rule) and keeps the CRI keys where version 3 has them. A
daemon migrates an older file in memory at load, so ``containerd config dump`` always shows its
own version's layout.

>>> runtime_shape("2.1.9").sandbox_path[-2:]
('pinned_images', 'sandbox')
>>> file_shape(2).sandbox_path[-1]
'sandbox_image'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from podinfra import versions
from podinfra.errors import ConfigError
from podinfra.tomlpath import CRI_V1

IMAGES_V3 = ("plugins", "io.containerd.cri.v1.images")
_OUTPUT = re.compile(r"^containerd\s+\S+\s+v?(\d+\.\d+\.\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Shape:
    """A config version's key paths for the sandbox image and the registry ``config_path``."""

    config_version: int
    sandbox_path: tuple[str, ...]
    config_path_path: tuple[str, ...]

    @property
    def registry_path(self) -> tuple[str, ...]:
        return self.config_path_path[:-1]


def file_shape(config_version: int) -> Shape:
    """Where a file of this config version keeps the two keys (2: the 1.x CRI plugin; 3 and 4: images)."""
    if config_version <= 2:
        return Shape(config_version, (*CRI_V1, "sandbox_image"), (*CRI_V1, "registry", "config_path"))
    return Shape(config_version, (*IMAGES_V3, "pinned_images", "sandbox"), (*IMAGES_V3, "registry", "config_path"))


def release(containerd_version: str) -> tuple[int, int]:
    try:
        return versions.release(containerd_version)[:2]
    except versions.VersionError:
        raise ConfigError(
            f"{containerd_version!r} is not a containerd version: write MAJOR.MINOR[.PATCH], e.g. 1.7.27"
        ) from None


def runtime_shape(containerd_version: str) -> Shape:
    """The config version a containerd release reads natively, and where its effective config (the dump)
    holds the keys: ``runtime_shape("1.6.20~ds1").config_version == 2``."""
    found = release(containerd_version)
    if (1, 6) <= found < (2, 0):
        return file_shape(2)
    if (2, 0) <= found < (3, 0):
        return file_shape(3 if found < (2, 3) else 4)
    raise ConfigError(f"containerd {containerd_version} is not supported: podinfra knows containerd 1.6 to 2.x")


def version_from_output(output: str) -> str:
    """The release in ``containerd --version`` output, without distribution suffixes.

    >>> version_from_output("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1")
    '1.6.20'
    >>> version_from_output("containerd github.com/containerd/containerd/v2 2.1.9+unknown ")
    '2.1.9'
    """
    match = _OUTPUT.search(output)
    if not match:
        raise ConfigError(
            f"no version in `containerd --version` output {output.strip()[:200]!r}: is containerd installed?"
        )
    return match[1]
