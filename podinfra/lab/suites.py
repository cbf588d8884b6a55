"""Debian packages from other suites (trixie, sid), unpacked for the lab without touching the
host's apt configuration.

apt runs with a sources list, lists and cache of its own under the cache directory; the archive
is the one the host's own Debian sources name, so no mirror address is written here.

>>> deb_line("http://mirror.example/debian", "sid")
'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian sid main'
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from podinfra.lab.state import CACHE_DIR, LabError, cache_lock

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def debian_archive(sources: tuple[Path, ...] = SOURCES) -> str:
    """The URI of the Debian archive the host's apt uses (the one serving its main suite)."""
    for path in sources:
        files = sorted(path.glob("*.sources")) + sorted(path.glob("*.list")) if path.is_dir() else [path]
        for file in files:
            if not file.is_file():
                continue
            text = file.read_text(errors="replace")
            # deb822 (URIs: ...) and one-line (deb URI suite ...) forms; security archives are not it.
            found = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
            found += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.MULTILINE)
            for uri in found:
                if uri.rstrip("/").endswith("/debian"):
                    return str(uri).rstrip("/")
    raise LabError("no Debian archive in the host's apt sources (/etc/apt/sources.list*): the lab needs one")


def deb_line(archive: str, suite: str) -> str:
    return f"deb [signed-by={KEYRING}] {archive} {suite} main"


def _apt(root: Path) -> list[str]:
    return [
        *("-o", f"Dir::Etc::SourceList={root / 'sources.list'}", "-o", "Dir::Etc::SourceParts=-"),
        *("-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}"),
        *("-o", "Debug::NoLocking=1", "-q"),
    ]


def candidate(root: Path, package: str) -> str:
    """The version apt would take of `package` from the suite in `root`'s sources list."""
    out = subprocess.run(
        ["apt-cache", *_apt(root), "policy", package], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"^\s*Candidate:\s*(\S+)", out, re.MULTILINE)
    if not match or match[1] == "(none)":
        raise LabError(f"{package} is not in {root.name}'s package list")
    return match[1]


def cached(package: str, line: str) -> tuple[Path, str] | None:
    """The newest tree of `package` `line` unpacked before, and its version."""
    done = [(d, (d / ".podinfra-complete").read_text().strip()) for d in CACHE_DIR.glob(f"{package}-{line}[.~]*")]
    done = [(tree, version) for tree, version in done if version]
    return max(done, key=lambda found: found[0].stat().st_mtime) if done else None


def unpack(suite: str, package: str, line: str, log: Path) -> tuple[Path, str]:
    """`package` of `suite`, whose version must start with `line` (e.g. "2.1"), unpacked once under the
    cache directory; returns (tree, version). Once a tree of that line is cached, apt is not asked
    again: a lab is rebuilt from the same binaries until the cache is cleared."""
    found = cached(package, line)
    if found:
        return found
    root = CACHE_DIR / f"apt-{suite}"
    with cache_lock(root):  # one apt state per suite; a lab that waited here finds the tree unpacked
        return cached(package, line) or _download(root, suite, package, line, log)


def _download(root: Path, suite: str, package: str, line: str, log: Path) -> tuple[Path, str]:
    for sub in ("lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(deb_line(debian_archive(), suite) + "\n")
    with log.open("ab") as sink:
        if not any((root / "lists").glob("*_Packages")):
            subprocess.run(["apt-get", *_apt(root), "update"], check=True, stdout=sink, stderr=subprocess.STDOUT)
        version = candidate(root, package)
        if not version.startswith(f"{line}.") and not version.startswith(f"{line}~"):
            raise LabError(f"{suite} offers {package} {version}, not a {line} release: name another suite")
        tree = CACHE_DIR / f"{package}-{version.replace(':', '_').replace('~', '_')}"
        downloads = root / "downloads"
        downloads.mkdir(exist_ok=True)
        subprocess.run(
            ["apt-get", *_apt(root), "download", f"{package}={version}"],
            cwd=downloads,
            check=True,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    debs = sorted(downloads.glob(f"{package}_*.deb"))
    deb = next((d for d in debs if d.name.startswith(f"{package}_{version.split(':')[-1]}_")), None)
    if deb is None:
        raise LabError(f"apt downloaded no {package} {version} into {downloads}")
    partial = tree.with_name(tree.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
    (partial / ".podinfra-complete").write_text(version + "\n")
    shutil.rmtree(tree, ignore_errors=True)
    partial.rename(tree)
    return tree, version
