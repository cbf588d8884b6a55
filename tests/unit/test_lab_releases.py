"""podinfra.lab.releases: which release tarball a lab line takes, and the refusal when there is none."""

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import podinfra
from podinfra.lab import releases, state
from podinfra.lab.state import LabError


def tarball(folder, name, members=("bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr")):
    path = folder / name
    with tarfile.open(path, "w:xz" if name.endswith(".xz") else "w:gz") as tar:
        for member in members:
            info = tarfile.TarInfo(member)
            info.size, info.mode = 3, 0o755
            tar.addfile(info, io.BytesIO(b"#!\n"))
    return path


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(releases, "CACHE_DIR", tmp_path / "cache")
    found = tmp_path / "releases"
    found.mkdir()
    monkeypatch.setenv("PODINFRA_CONTAINERD_RELEASES", str(found))
    return found


def test_a_line_without_a_tarball_is_refused_in_one_line_naming_file_folder_and_layout(folder):
    with pytest.raises(LabError) as refused:
        releases.find(releases.CONTAINERD, "2.2")
    message = str(refused.value)
    assert "\n" not in message
    assert "containerd-2.2.*-linux-amd64.tar.xz (or .tar.gz)" in message and str(folder) in message
    assert "containerd's own release tarballs have that layout" in message
    assert "bin/containerd, bin/containerd-shim-runc-v2, bin/ctr" in message


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        (("fetch", "--containerd", "2.3"), "containerd-2.3.*"),
        (("up", "--name", "nolab", "--runtimes", "2.1,2.2"), "containerd-2.2.*"),
        (("up", "--name", "nolab", "--runtimes", "cri-o"), "cri-o-1.36.*"),
    ],
)
def test_the_cli_refuses_it_with_exit_code_2_one_line_and_nothing_made(folder, command, missing):
    state_root = folder.parent / "state"
    done = subprocess.run(
        [sys.executable, "-m", "podinfra.cli", "lab", *command],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PODINFRA_CACHE_DIR": str(folder.parent / "cache"),
            "PODINFRA_STATE_ROOT": str(state_root),
            "PODINFRA_CRIO_RELEASES": str(folder),
        },
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"no {missing}-linux-amd64.tar.xz" in done.stderr, done.stderr
    assert not state_root.exists() and not (folder.parent / "cache").exists()


def test_the_newest_patch_of_the_line_is_taken_xz_or_gz(folder):
    for name in ("containerd-2.2.7-linux-amd64.tar.xz", "containerd-2.2.10-linux-amd64.tar.gz"):
        tarball(folder, name)
    tarball(folder, "containerd-2.20.1-linux-amd64.tar.xz")  # another line
    assert releases.find(releases.CONTAINERD, "2.2") == (folder / "containerd-2.2.10-linux-amd64.tar.gz", "2.2.10")
    tree, version = releases.unpack(releases.CONTAINERD, "2.2")
    assert version == "2.2.10" and (tree / "bin/containerd-shim-runc-v2").is_file()
    assert releases.unpack(releases.CONTAINERD, "2.2") == (tree, version), "unpacked once"


def test_the_folder_defaults_to_shared_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("PODINFRA_CONTAINERD_RELEASES", raising=False)
    assert releases.folder(releases.CONTAINERD) == releases.BESIDE_CHECKOUT / "shared" / "containerd"
    assert Path(podinfra.__file__).resolve().parents[2] == releases.BESIDE_CHECKOUT, "the checkout's parent"


def test_sha256sums_are_checked_when_present(folder):
    path = tarball(folder, "containerd-2.3.4-linux-amd64.tar.xz")
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  {path.name}\n")
    with pytest.raises(LabError, match="SHA256SUMS says 0000"):
        releases.unpack(releases.CONTAINERD, "2.3")
    (folder / "SHA256SUMS").write_text("")
    with pytest.raises(LabError, match="does not list containerd-2.3.4-linux-amd64.tar.xz"):
        releases.unpack(releases.CONTAINERD, "2.3")
    (folder / "SHA256SUMS").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()} *{path.name}\n")
    assert releases.unpack(releases.CONTAINERD, "2.3")[1] == "2.3.4"


def test_a_tarball_without_the_release_layout_is_refused(folder):
    tarball(folder, "containerd-2.3.4-linux-amd64.tar.xz", members=("containerd",))
    with pytest.raises(LabError, match="has no bin/containerd, bin/containerd-shim-runc-v2, bin/ctr"):
        releases.unpack(releases.CONTAINERD, "2.3")


def _hold(cache: str, log: str) -> None:
    import time

    state.CACHE_DIR = Path(cache)
    with state.cache_lock(Path(cache) / "entry"):
        start = time.monotonic()
        time.sleep(0.2)
        with open(log, "a") as out:
            out.write(f"{start} {time.monotonic()}\n")


def test_the_cache_lock_lets_one_builder_at_a_time(tmp_path):
    """Several labs coming up at once build a cache entry one after another (podinfra.lab.state.cache_lock)."""
    import multiprocessing

    log = tmp_path / "held"
    workers = [multiprocessing.Process(target=_hold, args=(str(tmp_path), str(log))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    held = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(held) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in zip(held, held[1:], strict=False)), held
