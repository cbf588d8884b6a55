"""Known hazards of containerd releases and configs, named before they bite: what a release cannot run,
what it silently does otherwise than written. The deploy fails the node with these lines before it
changes anything; the checks name the same on a node already in that state.

From containerd's git at its release tags:

- 2.3.0 to 2.3.3 look the sandbox image up by the string as written, so a short name (``pause:3.10``)
  or a tag plus digest (``r/pause:3.10@sha256:...``, which the CRI files as ``r/pause@sha256:...``)
  is "not found" and no sandbox starts (containerd#13529, #13513; fixed in 2.3.4 by #13759).
- Every release compares ``pinned_images`` with the normalized name, so a sandbox image without a
  tag (``r/pause``, stored as ``r/pause:latest``) never gets the pinned label and image GC may
  remove it (containerd#13314, open).
- From 2.2.0, on Linux, an empty ``config_path`` with no ``mirrors`` means
  ``/etc/containerd/certs.d:/etc/docker/certs.d`` (containerd#12636; 2.2.2 moved the default out of
  ``containerd config default`` into the images plugin's start, so ``config dump`` shows "" there).
  1.x and 2.0 search such a list in order and take, per registry, the first directory that has the
  registry's directory or ``_default`` (docs/hosts.md; ``hostDirFromRoots``). But from 2.1.0 the
  CRI pulls through the transfer service, which takes ``config_path`` as one directory
  (``registry.WithHostDir``; ``HostDirFromRoot`` of the whole string): with several, the CRI's
  pulls read no hosts.toml at all and go to the registry itself (seen on 2.2.7 and 2.3.4 here).
- Docker's ``containerd.io`` package installs a file with no ``version`` and
  ``disabled_plugins = ["cri"]``: the node has no CRI at all.

>>> sandbox_image("2.3.1", "10.0.0.2:5000/pause:3.10.2@sha256:" + "0" * 64).split(":")[0]
'containerd 2.3.1 cannot start a sandbox from 10.0.0.2'
>>> config_path_dirs("", "2.2.7")
['/etc/containerd/certs.d', '/etc/docker/certs.d']
>>> several_dirs(["/etc/containerd/certs.d", "/etc/docker/certs.d"], "2.3.4").split(":")[0]
'containerd 2.3.4 pulls for the CRI through its transfer service, which reads config_path as one directory'

"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from podinfra import versions

FIXED_IN = (2, 3, 4)
BROKEN_FROM = (2, 3, 0)
# containerd's own default config_path on Linux from 2.2.0, when the config names none and no mirrors.
DEFAULT_CONFIG_PATH_FROM = (2, 2, 0)
DEFAULT_CONFIG_PATH = "/etc/containerd/certs.d:/etc/docker/certs.d"
# From 2.1.0 the CRI pulls through the transfer service, which reads config_path as one directory.
TRANSFER_PULL_FROM = (2, 1, 0)
_CRI = ("cri", "io.containerd.grpc.v1.cri")


def _written_parts(image: str) -> tuple[bool, bool, bool]:
    """(has a registry host, has a tag, has a digest) of `image` as written, before any normalizing."""
    name, _, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    host = bool(slash) and ("." in first or ":" in first or first == "localhost")
    last = name.rsplit("/", 1)[-1]
    return host, ":" in last, bool(digest)


def sandbox_image(containerd_version: str, image: str) -> str | None:
    """Why this containerd cannot (or will not pin and so may lose) the sandbox image `image`; None when it can."""
    host, tag, digest = _written_parts(image)
    found = versions.release(containerd_version)
    if BROKEN_FROM <= found < FIXED_IN and (not host or (tag and digest)):
        form = "a tag plus digest" if host else "a short name"
        return (
            f"containerd {containerd_version} cannot start a sandbox from {image} ({form}: it looks the image up "
            "as written and finds nothing, containerd#13529/#13513, fixed in 2.3.4): upgrade containerd to 2.3.4 "
            "or later" + (', or use sandbox_image_mode: "canonical"' if host else ", or name the registry")
        )
    if not tag and not digest:
        return (
            f"the sandbox image {image} has no tag: containerd never pins it (containerd#13314), so image GC "
            "may remove it; give it with its tag"
        )
    return None


def config_path_dirs(config_path: Any, containerd_version: str) -> list[str]:
    """The directories containerd searches for hosts.toml, in order, for a config_path value (from the file
    or `config dump`): an empty one is containerd's own default (none before 2.2)."""
    text = config_path if isinstance(config_path, str) else ""
    if not text and versions.release(containerd_version) >= DEFAULT_CONFIG_PATH_FROM:
        text = DEFAULT_CONFIG_PATH
    return [part for part in text.split(":") if part]


def several_dirs(dirs: list[str], containerd_version: str) -> str | None:
    """Why a config_path of several directories leaves this containerd's CRI pulls with no hosts.toml; None
    for one directory, or where the CRI searches the list (1.x, 2.0)."""
    if len(dirs) < 2 or versions.release(containerd_version) < TRANSFER_PULL_FROM:
        return None
    return (
        f"containerd {containerd_version} pulls for the CRI through its transfer service, which reads config_path "
        f"as one directory: {':'.join(dirs)!r} names none, so the CRI's pulls read no hosts.toml and go to each "
        "registry itself; set config_path to one directory (deploys/node.py sets containerd_certs_dir)"
    )


def host_dir_candidates(root: str, registry: str) -> list[str]:
    """Where containerd looks under one config_path directory for `registry`, in order (hosts.go hostPaths)."""
    found = [f"{root}/{registry}", f"{root}/_default"]
    head, _, port = registry.rpartition(":")
    if head and port.isdigit():
        found.insert(0, f"{root}/{head}_{port}_")
    return found


def hosts_dir_used(dirs: list[str], registry: str, exists: Mapping[str, bool]) -> str | None:
    """The directory containerd takes `registry`'s hosts.toml from: the first candidate that exists, searching
    `dirs` in order; None when none does (containerd then pulls from the registry itself)."""
    for root in dirs:
        for candidate in host_dir_candidates(root, registry):
            if exists.get(candidate):
                return candidate
    return None


def docker_package_config(document: Mapping[str, Any]) -> str | None:
    """The line for Docker's containerd.io file (no version, the CRI in disabled_plugins); None otherwise."""
    disabled = document.get("disabled_plugins", [])
    if "version" in document or not isinstance(disabled, list):
        return None
    off = [str(plugin) for plugin in disabled if str(plugin) in _CRI]
    if not off:
        return None
    return (
        f"config.toml is Docker's containerd.io file: disabled_plugins = {off!r} turns containerd's CRI off, so "
        'the kubelet has no runtime: remove "cri" from disabled_plugins, or regenerate the file with '
        "`containerd config default > /etc/containerd/config.toml`"
    )
