"""Image references (``registry.k8s.io/pause:3.10@sha256:...``), parsed and validated early."""

from __future__ import annotations

import re
from dataclasses import dataclass

from podinfra.errors import PodinfraError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$")
DOCKER_HUB = "docker.io"


class ReferenceError(PodinfraError, ValueError):  # noqa: A001 - the domain's own word
    """An image reference that cannot be pulled as written."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What a manifest request asks for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse like containerd does: ``pause:3.10`` is ``docker.io/library/pause:3.10``."""
    original = text
    if not text or text != text.strip() or "://" in text:
        raise ReferenceError(f"{original!r} is not an image reference: write REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError(f"{original!r}: digest must be sha256: and 64 lowercase hex digits")
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError(f"{original!r}: tag {tag!r} may use letters, digits, '_', '.', '-' (max 128)")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, text
        if "/" not in repository:
            repository = f"library/{repository}"
    if not _HOST.match(registry):
        raise ReferenceError(f"{original!r}: {registry!r} is not a registry host[:port]")
    if not _REPOSITORY.match(repository) or len(repository) > 255:
        raise ReferenceError(f"{original!r}: repository {repository!r} must be lowercase path components")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


def split_registry(text: str) -> tuple[str, str]:
    """``"10.0.0.2:5000/mirror"`` -> (``"10.0.0.2:5000"``, ``"mirror"``): a registry with an optional prefix."""
    if "://" in text:
        raise ReferenceError(f"{text!r}: give HOST[:PORT][/PREFIX] without a scheme (use --insecure for plain HTTP)")
    host, _, prefix = text.partition("/")
    if not _HOST.match(host):
        raise ReferenceError(f"{text!r}: {host!r} is not a registry host[:port]")
    if prefix and not _REPOSITORY.match(prefix.strip("/")):
        raise ReferenceError(f"{text!r}: prefix {prefix!r} must be lowercase path components")
    return host, prefix.strip("/")


def under(prefix: str, repository: str) -> str:
    """`repository` as kept under a registry's `prefix`: ``under("mirror", "pause")`` is ``"mirror/pause"``,
    ``under("", "pause")`` is ``"pause"``."""
    return f"{prefix}/{repository}" if prefix else repository


def cri_name(image: str) -> str:
    """The name containerd's CRI files `image` under: a digest drops the tag
    (``r/pause:3.10@sha256:x`` -> ``r/pause@sha256:x``)."""
    ref = parse(image)
    return f"{ref.registry}/{ref.repository}@{ref.digest}" if ref.digest else str(ref)
