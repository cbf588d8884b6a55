"""The large set: several images of two platforms, layers of a few MB to 512 MB, built reproducibly in a
loopback registry (`build_large`); its copy by `podinfra mirror`, `skopeo sync --all` and `crane copy`, and
`podinfra export` + `import` against `skopeo copy` to and from `oci-archive`, each under GNU time (peak RSS)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtools import PODINFRA, progress, run
from mirrorbench import CountingProxy, _mirror_twice_in_process, fresh_registry

from podinfra import versions
from podinfra.images import oci
from podinfra.images.registry import RegistryClient
from podinfra.images.transfer import Verified

MIB = 1024**2
LARGE_TAG = "1.0"
# Layer sizes in MiB of each image, the same for both platforms (their bytes differ).
LARGE_IMAGES = {"large/base": (4, 16), "large/app": (2, 64, 128), "large/data": (512,)}
LARGE_PLATFORMS = ({"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64", "variant": "v8"})
LARGE_TOOLS = ("podinfra", "skopeo", "crane")
ARCHIVE_TOOLS = ("podinfra", "skopeo")


def seeded(size: int, seed: int) -> Iterator[bytes]:
    """`size` bytes from one random MiB of `seed`, each MiB made distinct by its number: gzip finds nothing to
    take out (its window is 32 KiB), and the same seed gives the same bytes."""
    base = random.Random(seed).randbytes(MIB)
    for number, start in enumerate(range(0, size, MIB)):
        yield (number.to_bytes(8, "big") + base[8:])[: min(MIB, size - start)]


def tar_stream(size: int, seed: int) -> Iterator[bytes]:
    """A tar of one file, data.bin, of `size` seeded bytes, mtime 0, root-owned."""
    info = tarfile.TarInfo("data.bin")
    info.size, info.mode, info.mtime = size, 0o644, 0
    yield info.tobuf(tarfile.USTAR_FORMAT)
    yield from seeded(size, seed)
    yield b"\0" * (-size % 512) + b"\0" * 1024


def gzip_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """gzip at level 0 (stored blocks, header mtime 0): a real gzip layer, made at memory speed."""
    compressor = zlib.compressobj(0, zlib.DEFLATED, 31)
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def push_layer(client: RegistryClient, repo: str, size: int, seed: int) -> tuple[dict[str, Any], str]:
    """One layer, made twice (once to learn its digests, once to send it) and never whole in memory;
    returns (descriptor, diff_id)."""
    tar_hash, gz_hash, gz_size = hashlib.sha256(), hashlib.sha256(), 0

    def hashed_tar() -> Iterator[bytes]:
        for chunk in tar_stream(size, seed):
            tar_hash.update(chunk)
            yield chunk

    for chunk in gzip_stream(hashed_tar()):
        gz_hash.update(chunk)
        gz_size += len(chunk)
    digest = f"sha256:{gz_hash.hexdigest()}"
    if not client.blob_exists(repo, digest):
        body = Verified(gzip_stream(tar_stream(size, seed)), digest, gz_size, f"layer {digest}")
        client.upload_blob(repo, digest, gz_size, body)
    return {"mediaType": oci.OCI_LAYER, "digest": digest, "size": gz_size}, f"sha256:{tar_hash.hexdigest()}"


def build_large(client: RegistryClient, scale: float = 1.0) -> dict[str, str]:
    """Push the large set (layers `scale` times their sizes) to `client`; returns repository -> index digest.
    Reproducible: the same scale gives the same digests on every run."""
    published = {}
    for number, (repo, sizes) in enumerate(LARGE_IMAGES.items()):
        images = []
        for p, platform in enumerate(LARGE_PLATFORMS):
            layers, diff_ids = [], []
            for n, mib in enumerate(sizes):
                layer, diff_id = push_layer(
                    client, repo, max(int(mib * scale * MIB), 4096), 1000 * number + 100 * p + n
                )
                layers.append(layer)
                diff_ids.append(diff_id)
            config = oci.Blob(
                oci.OCI_CONFIG,
                oci.encode({**platform, "created": "1970-01-01T00:00:00Z", "config": {},
                            "rootfs": {"type": "layers", "diff_ids": diff_ids}}),
            )  # fmt: skip
            client.push_blob(repo, config.data)
            document = {
                "schemaVersion": 2,
                "mediaType": oci.OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": layers,
            }
            manifest = oci.Blob(oci.OCI_MANIFEST, oci.encode(document))
            client.push_manifest(repo, manifest.digest, manifest)
            images.append(manifest.descriptor(platform=platform))
        index = oci.Blob(
            oci.OCI_INDEX, oci.encode({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": images})
        )
        client.push_manifest(repo, LARGE_TAG, index)
        published[repo] = index.digest
    return published


def large_bytes(scale: float = 1.0) -> int:
    return sum(max(int(mib * scale * MIB), 4096) for sizes in LARGE_IMAGES.values() for mib in sizes) * len(
        LARGE_PLATFORMS
    )


@dataclass
class Measured:
    seconds: float
    rss_mib: float  # the largest peak RSS of the tool's processes (GNU time's %M)
    stdout: str = ""


def measured(commands: list[list[str]], env: dict[str, str] | None = None) -> Measured:
    """Run `commands` one after the other, each under /usr/bin/time: wall time of them all, the largest peak RSS.
    (GNU time forks the tool itself: a tool forked from this runner would count the runner's pages as its own.)"""
    start = time.perf_counter()
    peak, out = 0.0, []
    with tempfile.NamedTemporaryFile("r") as report:
        for cmd in commands:
            result = run(["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd], env)
            if result.returncode != 0:
                raise RuntimeError(f"{cmd[0]} failed:\n{(result.stdout + result.stderr)[-3000:]}")
            report.seek(0)
            peak = max(peak, int(report.read().split()[-1]) / 1024)
            out.append(result.stdout)
    return Measured(time.perf_counter() - start, peak, "".join(out))


def crane_binary() -> str | None:
    """crane 0.20 from Debian sid (its binary runs on bookworm), unpacked under /var/cache/podinfra once."""
    from podinfra.lab import suites

    try:
        tree, _ = suites.unpack("sid", "crane", "0.20", Path(tempfile.gettempdir()) / "podinfra-bench-crane.log")
    except Exception as exc:  # no archive, no root: the crane rows say why
        progress(f"crane unavailable: {exc}")
        return None
    return str(tree / "usr" / "bin" / "crane")


def large_copy_commands(tool: str, upstream: str, dest: str, workdir: Path, crane: str | None) -> list[list[str]]:
    if tool == "podinfra":
        images = [arg for repo in LARGE_IMAGES for arg in ("--image", f"{versions.UPSTREAM}/{repo}:{LARGE_TAG}")]
        return [[PODINFRA, "mirror", *images, "--source", upstream, "--source-insecure", "--to", dest, "--insecure",
                 "--json"]]  # fmt: skip
    if tool == "skopeo":
        # sync keeps the last part of each repository's path (large/base -> base): DEST/large puts it back.
        spec = workdir / "skopeo-large.yml"
        listed = "".join(f"    {repo}: ['{LARGE_TAG}']\n" for repo in LARGE_IMAGES)
        spec.write_text(f"{upstream}:\n  tls-verify: false\n  images:\n{listed}")
        return [["skopeo", "sync", "--all", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
                 "--retry-times", "0", str(spec), f"{dest}/large"]]  # fmt: skip
    assert crane
    # crane copies one image per command: one after the other, as a shell loop over the set would.
    return [[crane, "copy", "--insecure", f"{upstream}/{repo}:{LARGE_TAG}", f"{dest}/{repo}:{LARGE_TAG}"]
            for repo in LARGE_IMAGES]  # fmt: skip


def verify_large(published: dict[str, str], dest: str) -> None:
    target = RegistryClient(f"http://{dest}")
    for repo, digest in published.items():
        held = target.manifest_digest(repo, LARGE_TAG)
        if held != digest:
            raise RuntimeError(f"{repo}:{LARGE_TAG}: destination holds {held}, upstream {digest}")


ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
# The large set's registries keep their data in memory: GBs written per run to this VM's shared disk made the
# times swing by half between identical runs, and the disk is no part of what the tools do.
MEMORY = "/dev/shm" if os.path.isdir("/dev/shm") else None


def large_pair(tool: str, upstream: str, published: dict[str, str], workdir: Path, crane: str | None,
               through_proxy: bool = False) -> tuple[Measured, Measured, tuple[int, int], tuple[int, int]]:  # fmt: skip
    """Cold copy of the large set into a fresh registry, then the re-copy into it: (cold, re-copy,
    (bytes, requests) sent cold, (bytes, requests) sent on the re-copy); the counts only `through_proxy`."""
    with fresh_registry(MEMORY) as dest:
        proxy = CountingProxy(dest) if through_proxy else None
        target = proxy.address if proxy else dest
        try:
            cold = measured(large_copy_commands(tool, upstream, target, workdir, crane), ENV)
            time.sleep(0.2 if proxy else 0)  # let the pumps see the tool's connections close
            counts = [(proxy.sent, proxy.requests) if proxy else (0, 0)]
            if proxy:
                proxy.reset()
            verify_large(published, dest)
            again = measured(large_copy_commands(tool, upstream, target, workdir, crane), ENV)
            time.sleep(0.2 if proxy else 0)
            counts.append((proxy.sent, proxy.requests) if proxy else (0, 0))
        finally:
            if proxy:
                proxy.close()
    return cold, again, counts[0], counts[1]


def archive_round(tool: str, upstream: str, published: dict[str, str], workdir: Path) -> tuple[Measured, Measured, int]:
    """Export the large set to archives and import them into a fresh registry: (export, import, archive bytes).
    podinfra writes one archive of every image; skopeo one oci-archive per image (its format holds one)."""
    out = workdir / f"{tool}-archives"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    with fresh_registry(MEMORY) as dest:
        if tool == "podinfra":
            images = [arg for repo in LARGE_IMAGES for arg in ("--image", f"{versions.UPSTREAM}/{repo}:{LARGE_TAG}")]
            bundle = out / "large.tar"
            exported = measured([[PODINFRA, "export", *images, "--source", upstream, "--source-insecure",
                                  "-o", str(bundle)]], ENV)  # fmt: skip
            imported = measured([[PODINFRA, "import", str(bundle), "--to", dest, "--insecure", "--json"]], ENV)
        else:

            def archive(repo: str) -> str:
                return f"oci-archive:{out / repo.replace('/', '_')}.tar:{LARGE_TAG}"

            exported = measured([["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{upstream}/{repo}:{LARGE_TAG}",
                                  archive(repo)] for repo in LARGE_IMAGES], ENV)  # fmt: skip
            imported = measured([["skopeo", "copy", "--all", "--dest-tls-verify=false", archive(repo),
                                  f"docker://{dest}/{repo}:{LARGE_TAG}"] for repo in LARGE_IMAGES], ENV)  # fmt: skip
        verify_large(published, dest)
        size = sum(path.stat().st_size for path in out.iterdir())
    shutil.rmtree(out, ignore_errors=True)
    return exported, imported, size


def platform_text(platform: dict[str, str]) -> str:
    return "/".join(platform[key] for key in ("os", "architecture", "variant") if key in platform)


def in_process_large(upstream: str, published: dict[str, str]) -> tuple[float, float]:
    """podinfra's copy of the large set without the interpreter's start and imports (see `in_process_pair`)."""
    images = [arg for repo in LARGE_IMAGES for arg in ("--image", f"{versions.UPSTREAM}/{repo}:{LARGE_TAG}")]
    with fresh_registry(MEMORY) as dest:
        times = _mirror_twice_in_process(upstream, dest, images)
        verify_large(published, dest)
    return times
