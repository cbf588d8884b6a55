"""Readers of ``ctr`` output (containerd's own client, on every containerd node).

>>> row = "registry.k8s.io/pause:3.10 application/x sha256:ab 299.0 KiB linux/amd64 a=b,c=d"
>>> images("REF TYPE DIGEST SIZE PLATFORMS LABELS\\n" + row)["registry.k8s.io/pause:3.10"].labels
{'a': 'b', 'c': 'd'}
"""

from __future__ import annotations

from dataclasses import dataclass

PINNED_LABEL = "io.cri-containerd.pinned"


@dataclass(frozen=True)
class StoredImage:
    name: str
    digest: str
    labels: dict[str, str]

    @property
    def pinned(self) -> bool:
        return self.labels.get(PINNED_LABEL) == "pinned"


def images(output: str) -> dict[str, StoredImage]:
    """`ctr images ls` rows by name: REF TYPE DIGEST SIZE(2 words) PLATFORMS LABELS."""
    found = {}
    for line in output.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 3:
            continue
        labels: dict[str, str] = {}
        if len(parts) >= 7 and parts[-1] != "-":
            for item in parts[-1].split(","):
                key, _, value = item.partition("=")
                labels[key] = value
        found[parts[0]] = StoredImage(parts[0], parts[2], labels)
    return found


def container_images(output: str) -> set[str]:
    """The images of `ctr containers ls` rows (CONTAINER IMAGE RUNTIME): pod sandboxes name their pause.

    >>> sorted(container_images("CONTAINER IMAGE RUNTIME\\nab12 registry.k8s.io/pause:3.9 io.containerd.runc.v2\\n"))
    ['registry.k8s.io/pause:3.9']
    """
    return {parts[1] for parts in (line.split() for line in output.splitlines()[1:]) if len(parts) >= 2}


def repository(name: str) -> str:
    """``10.0.0.2:5000/mirror/pause:3.10@sha256:...`` -> ``10.0.0.2:5000/mirror/pause``."""
    head, _, last = name.split("@")[0].rpartition("/")
    return f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]


def old_pauses(stored: dict[str, StoredImage], current: str) -> list[StoredImage]:
    """The pause images in the store other than `current` (by name and by digest): what an upgrade left.

    >>> rows = ["r/pause:3.9 x sha256:1", "r/pause:3.10 x sha256:2", "r/pause@sha256:2 x sha256:2", "r/a:1 x s"]
    >>> [i.name for i in old_pauses(images("\\n".join(["R T D", *rows])), "r/pause:3.10")]
    ['r/pause:3.9']
    """
    now = stored.get(current)
    pauses = [image for name, image in stored.items() if repository(name).rsplit("/", 1)[-1] == "pause"]
    return [image for image in pauses if image.name != current and (now is None or image.digest != now.digest)]
