"""The CRI-O node layer: CRI-O 1.36 from its release tarball (PODINFRA_CRIO_RELEASES), conmon and its
GLib from Debian bookworm, and the lab's own settings for CRI-O (``files/``):

- ``crio-00-podinfra-lab.conf`` as /etc/crio/crio.conf.d/00-podinfra-lab.conf: vfs storage, cgroupfs,
  runc behind the oom_score_adj clamp, the CNI plugins' directory. It sorts first, so operator
  drop-ins (podinfra's 90-podinfra.conf) override it; it carries no pause_image.
- ``podinfra-lab-runc``: the clamp, in front of bookworm's /usr/sbin/runc.
- ``crio.service``: a plain unit, Type=notify, after the lab's cgroup unit.
- ``containers-policy.json``: the accept-anything policy containers-common ships, which CRI-O needs to pull.

containerd stays installed but masked on a CRI-O node, so the node runs CRI-O alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from podinfra.lab import releases
from podinfra.lab.state import CACHE_DIR, LabError, cache_lock

LINE = "1.36"
DROPIN = "/etc/crio/crio.conf.d/00-podinfra-lab.conf"
# conmon, and the GLib it links that the node image lacks; downloaded with the host's apt (bookworm, as the nodes).
DEBS = ("conmon", "libglib2.0-0")
# file in files/ -> (path on the node, mode)
LAB_FILES = {
    "crio-00-podinfra-lab.conf": (DROPIN, 0o644),
    "podinfra-lab-runc": ("/usr/local/sbin/podinfra-lab-runc", 0o755),
    "crio.service": ("/etc/systemd/system/crio.service", 0o644),
    "containers-policy.json": ("/etc/containers/policy.json", 0o644),
}
LINKS = {
    "/etc/systemd/system/multi-user.target.wants/crio.service": "/etc/systemd/system/crio.service",
    "/etc/systemd/system/containerd.service": "/dev/null",  # masked: the node runs CRI-O alone
}
FILES = Path(__file__).parent / "files"

# `podinfra lab reset` on a CRI-O node: the lab's drop-in alone (from stdin), no registry files or credentials
# that a deploy wrote, no kubelet flags. Images go through the CRI afterwards (see lifecycle.reset).
RESET = f"""\
set -e
rm -rf /etc/crio /etc/podinfra /var/lib/kubelet/kubeadm-flags.env
find /etc/containers -mindepth 1 -maxdepth 1 ! -name policy.json -exec rm -rf {{}} +
mkdir -p {os.path.dirname(DROPIN)}
cat > {DROPIN}
# tests restart the runtime often (rollbacks, refusals): systemd's start limit must not refuse the reset's start
systemctl reset-failed crio 2>/dev/null || true
systemctl restart crio
for _ in $(seq 1 30); do test -S /var/run/crio/crio.sock && break; sleep 0.5; done
"""


def dropin() -> bytes:
    return (FILES / "crio-00-podinfra-lab.conf").read_bytes()


def layer(log: Path) -> tuple[Path, str]:
    """The overlay layer of a CRI-O node; returns (layer, the version `crio --version` prints)."""
    tree, version = releases.unpack(releases.CRIO, LINE)
    recipe = [(name, (FILES / name).read_bytes()) for name in LAB_FILES]
    key = hashlib.sha256(repr((tree.name, recipe, DEBS, LINKS)).encode()).hexdigest()[:12]
    out = CACHE_DIR / f"layer-crio-{version}-{key}"
    if not (out / ".podinfra-complete").exists():
        with cache_lock(out):
            if not (out / ".podinfra-complete").exists():
                _build(out, tree, log)
    return out, (out / ".podinfra-complete").read_text().strip()


def _build(out: Path, tree: Path, log: Path) -> None:
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for deb in _debs(log):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    shutil.rmtree(partial / "usr/share", ignore_errors=True)  # docs and man pages
    (partial / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    for name in ("crio", "pinns"):
        shutil.copy2(tree / "bin" / name, partial / "usr/local/bin" / name)
    for name, (path, mode) in LAB_FILES.items():
        target = partial / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILES / name, target)
        os.chmod(target, mode)
    for link, points_to in LINKS.items():
        linked = partial / link.lstrip("/")
        linked.parent.mkdir(parents=True, exist_ok=True)
        linked.symlink_to(points_to)
    (partial / ".podinfra-complete").write_text(version_of(partial / "usr/local/bin/crio") + "\n")
    partial.rename(out)


def _debs(log: Path) -> list[Path]:
    """DEBS as the host's apt has them (its lists, its sources: the nodes are bookworm as the host is)."""
    downloads = CACHE_DIR / "debs-bookworm"
    downloads.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:

        def apt_get(*args: str) -> int:
            return subprocess.run(
                ["apt-get", "-q", *args], cwd=downloads, stdout=sink, stderr=subprocess.STDOUT
            ).returncode

        failed = apt_get("download", *DEBS)
        if failed:  # a machine whose apt lists are missing or old knows no candidate: update them once
            apt_get("update")
            failed = apt_get("download", *DEBS)
    if failed:
        raise LabError(f"apt-get download {' '.join(DEBS)} failed (see {log}): CRI-O nodes need them from Debian")
    found = [max(downloads.glob(f"{name}_*.deb"), key=lambda deb: deb.stat().st_mtime) for name in DEBS]
    return found


def version_of(crio: Path) -> str:
    """From `crio --version`, whose first line in 1.36 is "crio version 1.36.3"."""
    out = subprocess.run([str(crio), "--version"], capture_output=True, text=True, check=True).stdout.split()
    if out[:2] != ["crio", "version"] or len(out) < 3:
        raise LabError(f"{crio} --version printed {' '.join(out[:4])!r}, not CRI-O's version line")
    return out[2]


def remove_images(ssh_config: Path, node: str) -> None:
    """Every image the node's CRI-O holds, removed through its CRI (the nodes have no crictl); an image that a
    running sandbox uses stays, as containerd's do under `ctr images rm`."""
    from cri_api.v1 import api_pb2 as cri

    from podinfra.check.cri import CRIO_SOCKET, CRIError, Runtime, forwarded_socket

    with forwarded_socket(ssh_config, node, CRIO_SOCKET) as target:
        runtime = Runtime(target)
        try:
            for image in runtime.images.ListImages(cri.ListImagesRequest(), timeout=runtime.timeout).images:
                with contextlib.suppress(CRIError):
                    runtime._call(
                        "RemoveImage",
                        runtime.images.RemoveImage,
                        cri.RemoveImageRequest(image=cri.ImageSpec(image=image.id)),
                        runtime.timeout,
                    )
        finally:
            runtime.close()
