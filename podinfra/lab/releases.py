"""Release tarballs the lab takes from a folder the operator fills: containerd's
(``containerd-X.Y.Z-linux-amd64.tar.xz`` or ``.tar.gz``, holding bin/containerd, bin/containerd-shim-runc-v2
and bin/ctr, as containerd's own release assets do) and CRI-O's (``cri-o-X.Y.Z-linux-amd64.tar.xz``: bin/crio,
bin/pinns). podinfra never downloads one.

Each tarball is checked against the folder's SHA256SUMS when there is one, and unpacked once into the
cache, keyed by its name, size and mtime (so a cached line costs no checksum).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from podinfra.lab.state import CACHE_DIR, LabError, cache_lock

# The checkout's parent, where CI keeps shared/ beside the clone.
BESIDE_CHECKOUT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Product:
    name: str  # as in its tarballs' names
    env: str  # the environment variable naming the folder
    default: str  # the folder under shared/ beside the checkout
    layout: tuple[str, ...]  # what one of its release tarballs holds


CONTAINERD = Product(
    "containerd",
    "PODINFRA_CONTAINERD_RELEASES",
    "containerd",
    ("bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"),
)
CRIO = Product("cri-o", "PODINFRA_CRIO_RELEASES", "crio", ("bin/crio", "bin/pinns"))


def folder(product: Product) -> Path:
    return Path(os.environ.get(product.env) or BESIDE_CHECKOUT / "shared" / product.default)


def find(product: Product, line: str) -> tuple[Path, str]:
    """The tarball of `line`'s newest patch release in the product's folder, and that version."""
    where = folder(product)
    pattern = re.compile(rf"{re.escape(product.name)}-{re.escape(line)}\.(\d+)-linux-amd64\.tar\.(?:xz|gz)")
    found = [
        (int(m[1]), path) for path in where.glob(f"{product.name}-{line}.*") if (m := pattern.fullmatch(path.name))
    ]
    if not found:
        raise LabError(
            f"{product.name} {line}: no {product.name}-{line}.*-linux-amd64.tar.xz (or .tar.gz) in {where} "
            f"(env {product.env}); {product.name}'s own release tarballs have that layout "
            f"({', '.join(product.layout)}): put the release you run there"
        )
    patch, tarball = max(found)
    return tarball, f"{line}.{patch}"


def verify(tarball: Path) -> None:
    """Compare the tarball with its line in SHA256SUMS beside it, when that file exists."""
    sums = tarball.parent / "SHA256SUMS"
    if not sums.exists():
        return
    listed = {
        parts[1].lstrip("*"): parts[0] for parts in map(str.split, sums.read_text().splitlines()) if len(parts) == 2
    }
    if tarball.name not in listed:
        raise LabError(f"{sums} does not list {tarball.name}: add its line (sha256sum {tarball.name} >> SHA256SUMS)")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != listed[tarball.name]:
        raise LabError(f"{tarball} has sha256 {digest}, SHA256SUMS says {listed[tarball.name]}: replace the file")


def unpack(product: Product, line: str) -> tuple[Path, str]:
    """`product` `line`'s release tarball unpacked under the cache; returns (tree, version)."""
    tarball, version = find(product, line)
    stat = tarball.stat()
    key = hashlib.sha256(repr((str(tarball.resolve()), stat.st_size, stat.st_mtime_ns)).encode()).hexdigest()[:12]
    tree = CACHE_DIR / f"{product.name}-{version}-release-{key}"
    if (tree / ".podinfra-complete").exists():
        return tree, version
    with cache_lock(tree):
        if (tree / ".podinfra-complete").exists():
            return tree, version
        verify(tarball)
        partial = tree.with_name(tree.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        subprocess.run(["tar", "-xf", str(tarball), "-C", str(partial), "--no-same-owner"], check=True)
        missing = [name for name in product.layout if not (partial / name).is_file()]
        if missing:
            raise LabError(
                f"{tarball} has no {', '.join(missing)}: "
                f"a {product.name} release tarball holds {', '.join(product.layout)}"
            )
        (partial / ".podinfra-complete").write_text(version + "\n")
        partial.rename(tree)
    return tree, version
