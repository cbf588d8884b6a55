"""The lab's node image: one mmdebstrap tarball, cached, unpacked once into a shared base tree
that every node overlays."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from podinfra.lab.state import CACHE_DIR

SUITE = "bookworm"
PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,containerd,runc,containernetworking-plugins,"
    "iproute2,ca-certificates,python3,curl,docker-registry"
)
# Bump when customize() changes what it writes, so cached base trees are rebuilt.
RECIPE = 1
FILES = resources.files("podinfra.lab") / "files"


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def tarball_path() -> Path:
    return CACHE_DIR / f"node-{SUITE}-{_key(SUITE, PACKAGES)}.tar"


def base_path() -> Path:
    recipe = [FILES.joinpath(name).read_bytes() for name in sorted(f.name for f in FILES.iterdir())]
    return CACHE_DIR / f"base-{_key(SUITE, PACKAGES, RECIPE, recipe)}"


def ensure_tarball(log: Path) -> Path:
    """Build the node tarball once (about 50 s here); later calls reuse it."""
    out = tarball_path()
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.tar")  # mmdebstrap picks the format by extension
    with log.open("ab") as sink:
        subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(partial)],
            check=True,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    partial.rename(out)
    return out


def ensure_base(log: Path) -> Path:
    """Unpack and customise the shared, read-only lower tree of every node."""
    base = base_path()
    if (base / ".podinfra-complete").exists():
        return base
    tarball = ensure_tarball(log)
    partial = base.with_name(base.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(partial), "--numeric-owner"], check=True)
    customize(partial)
    (partial / ".podinfra-complete").touch()
    partial.rename(base)
    return base


def _link(tree: Path, link: str, target: str) -> None:
    path = tree / link.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.symlink_to(target)


def customize(tree: Path) -> None:
    """Turn the Debian tree into a lab node: air-gapped, addressed by networkd, runc-ready."""
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each node gets its own, written into its overlay
    for name in ("etc/hostname", "etc/machine-id"):
        (tree / name).write_text("")
    # Nodes have no way out; they should not try.
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        _link(tree, f"/etc/systemd/system/{timer}", "/dev/null")
    # The registry deploy turns the service on where it belongs.
    (tree / "etc/systemd/system/multi-user.target.wants/docker-registry.service").unlink(missing_ok=True)
    _link(
        tree,
        "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
        "/lib/systemd/system/systemd-networkd.service",
    )
    script = tree / "usr/local/sbin/podinfra-lab-cgroups"
    script.write_bytes(FILES.joinpath("podinfra-lab-cgroups").read_bytes())
    os.chmod(script, 0o755)
    unit = "podinfra-lab-cgroups.service"
    (tree / "etc/systemd/system" / unit).write_bytes(FILES.joinpath(unit).read_bytes())
    for wants in ("multi-user.target.wants", "containerd.service.requires"):
        _link(tree, f"/etc/systemd/system/{wants}/{unit}", f"/etc/systemd/system/{unit}")
    (tree / "etc/containerd/config.toml").write_bytes(FILES.joinpath("containerd-config.toml").read_bytes())
