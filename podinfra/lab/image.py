"""The lab's node image: one mmdebstrap tarball, cached, unpacked once into a shared base tree
that every node overlays, and one small layer per runtime on top of it.

containerd 1.6 is bookworm's own, in the base tree. Lines 1.7 and 2.1 are Debian's packages of later
suites, 2.2 and 2.3 containerd's release tarballs (``CONTAINERD_SUITES``): their containerd, shim and
ctr run on bookworm's glibc, and bookworm's runc 1.1.5 serves them all (sid's runc needs a newer glibc).
Each layer also carries the line's config.toml with the lab-only settings (``files/containerd-LINE.toml``):
that file stands for the operator's own, which podinfra edits. CRI-O's layer is built in
:mod:`podinfra.lab.crio`.

Cache entries are built under a lock each (several labs may come up at once) and renamed into place
when complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from podinfra.lab import releases, suites
from podinfra.lab.state import CACHE_DIR, CONTAINERD_SUITES, RELEASE, LabError, cache_lock

SUITE = "bookworm"
PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,containerd,runc,containernetworking-plugins,"
    "iproute2,ca-certificates,python3,curl,docker-registry,nginx"
)
# Bump when customize() changes what it writes, so cached base trees are rebuilt.
RECIPE = 3
FILES = resources.files("podinfra.lab") / "files"
# What a line's layer takes from its package: the daemon, the runc shim, ctr and the systemd unit.
PACKAGE_FILES = (
    "usr/bin/containerd",
    "usr/bin/containerd-shim-runc-v2",
    "usr/bin/ctr",
    "usr/lib/systemd/system/containerd.service",
)
# What it takes from a release tarball (installed over bookworm's, whose systemd unit starts /usr/bin/containerd).
RELEASE_FILES = {f"bin/{name}": f"usr/bin/{name}" for name in ("containerd", "containerd-shim-runc-v2", "ctr")}


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def tarball_path() -> Path:
    return CACHE_DIR / f"node-{SUITE}-{_key(SUITE, PACKAGES)}.tar"


def base_path() -> Path:
    recipe = [FILES.joinpath(name).read_bytes() for name in ("podinfra-lab-cgroups", "podinfra-lab-cgroups.service")]
    return CACHE_DIR / f"base-{_key(SUITE, PACKAGES, RECIPE, recipe)}"


def ensure_tarball(log: Path) -> Path:
    """Build the node tarball once (about 50 s here); later calls reuse it."""
    out = tarball_path()
    if out.exists():
        return out
    with cache_lock(out):
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
    with cache_lock(base):
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


def config_file(line: str) -> bytes:
    """The line's lab config.toml: Debian's stock file for that line plus the lab-only settings."""
    return FILES.joinpath(f"containerd-{line}.toml").read_bytes()


def line_layer(line: str, log: Path) -> tuple[Path, str]:
    """The overlay layer that makes a node run containerd `line`; returns (layer, the version that
    `containerd --version` prints). Built once per line and binaries (the directory name is the cache key)."""
    suite = suite_of(line)
    if suite is None:
        tree, source, files = base_path(), _base_version(), {}
    elif suite == RELEASE:
        tree, source = releases.unpack(releases.CONTAINERD, line)
        files = RELEASE_FILES
    else:
        tree, source = suites.unpack(suite, "containerd", line, log)
        files = {name: name for name in PACKAGE_FILES}
    config = config_file(line)
    layer = CACHE_DIR / f"layer-containerd-{line}-{_key(source, config, files)}"
    if not (layer / ".podinfra-complete").exists():
        with cache_lock(layer):
            if not (layer / ".podinfra-complete").exists():
                _build_layer(layer, tree, files, config)
    return layer, (layer / ".podinfra-complete").read_text().strip()


def _build_layer(layer: Path, tree: Path, files: dict[str, str], config: bytes) -> None:
    partial = layer.with_name(layer.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for name, installed in files.items():
        target = partial / installed
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / name, target)
    (partial / "etc/containerd").mkdir(parents=True)
    (partial / "etc/containerd/config.toml").write_bytes(config)
    daemon = partial / "usr/bin/containerd" if files else tree / "usr/bin/containerd"
    (partial / ".podinfra-complete").write_text(containerd_version(daemon) + "\n")
    partial.rename(layer)


def containerd_version(daemon: Path) -> str:
    """The version `containerd --version` prints ("containerd github.com/containerd/containerd/v2 v2.3.4 COMMIT"),
    without the v: the node's binaries run on this host too (both are bookworm)."""
    out = subprocess.run([str(daemon), "--version"], capture_output=True, text=True, check=True).stdout.split()
    if len(out) < 3 or out[0] != "containerd":
        raise LabError(f"{daemon} --version printed {' '.join(out)!r}, not containerd's version line")
    return out[2].removeprefix("v")


def suite_of(line: str) -> str | None:
    """Where containerd `line` comes from: a Debian suite, RELEASE (its release tarball) or None (the node image)."""
    if line not in CONTAINERD_SUITES:
        raise LabError(f"containerd {line}: the lab runs {', '.join(CONTAINERD_SUITES)}")
    return CONTAINERD_SUITES[line]


def _base_version() -> str:
    """The containerd package version of the base tree (bookworm's, unpacked by `ensure_base`), from its dpkg status."""
    status = base_path() / "var/lib/dpkg/status"
    for block in status.read_text().split("\n\n"):
        if block.startswith("Package: containerd\n"):
            return next(line.split(": ", 1)[1] for line in block.splitlines() if line.startswith("Version: "))
    raise LabError(f"{status} has no containerd package")


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
    # The registry deploy turns these on where they belong.
    for service in ("docker-registry.service", "nginx.service"):
        (tree / "etc/systemd/system/multi-user.target.wants" / service).unlink(missing_ok=True)
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
