"""pyinfra facts about a node's container runtime."""

from __future__ import annotations

from pyinfra.api.facts import FactBase

from podinfra.runtime_config import containerd_version_from_output, crio_version_from_output


class ContainerdVersion(FactBase[str | None]):
    """containerd's version, e.g. ``"1.6.20"``, or None where containerd is not installed."""

    def command(self) -> str:
        return "containerd --version 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return containerd_version_from_output("\n".join(output)) if output else None


class CrioVersion(FactBase[str | None]):
    """CRI-O's version, e.g. ``"1.31.1"``, or None where CRI-O is not installed."""

    def command(self) -> str:
        return "crio --version 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        return crio_version_from_output("\n".join(output))


class TextFile(FactBase[str | None]):
    """A file's whole text (trailing newlines kept as one), or None where it does not exist."""

    def command(self, path: str) -> str:
        quoted = "'" + path.replace("'", "'\\''") + "'"
        return f"if [ -f {quoted} ]; then echo present; cat {quoted}; else echo absent; fi"

    def process(self, output: list[str]) -> str | None:
        if not output or output[0] != "present":
            return None
        return "\n".join(output[1:]) + "\n" if len(output) > 1 else ""


class PinnedImage(FactBase[str | None]):
    """The image record for `image` in containerd's `k8s.io` namespace: "pinned", "present" or None."""

    def command(self, image: str) -> str:
        quoted = "'" + image.replace("'", "'\\''") + "'"
        return f"ctr -n k8s.io images ls 'name=={image}' 2>/dev/null | tail -n +2 | grep -F {quoted} || true"

    def process(self, output: list[str]) -> str | None:
        if not output:
            return None
        return "pinned" if "io.cri-containerd.pinned=pinned" in output[0] else "present"
