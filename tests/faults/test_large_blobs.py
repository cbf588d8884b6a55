"""A blob far larger than the memory a copy may take: `podinfra mirror`, `export` and `import` each run
in a child process whose peak RSS (wait4) must stay under LIMIT while a 320 MiB layer goes through."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .bigimage import MIB, push_image

LIMIT = 100 * MIB  # the target for any layer size
LAYER = 320 * MIB


# ru_maxrss counts what a child had before its exec too: a child forked from pytest (hundreds of MiB by
# now) would report pytest's size. So a small launcher, exec'd fresh, forks the command and reports it.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss(tmp_path: Path, *argv: str) -> tuple[int, str]:
    """Run `podinfra ARGV` as a child; (its peak RSS in bytes, its stdout). Fails on a non-zero exit."""
    report = tmp_path / "maxrss"
    command = [sys.executable, "-c", LAUNCHER, str(report), sys.executable, "-m", "podinfra.cli", *argv]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(report.read_text()), result.stdout


def test_mirror_export_and_import_of_a_large_layer_take_flat_memory(start_registry, tmp_path):
    upstream = start_registry()
    manifest = push_image(upstream, "big", "1", [MIB, LAYER], seed=7)
    source = ("--source", upstream.host, "--source-insecure", "--image", "registry.k8s.io/big:1")
    dest = start_registry()
    rss, out = peak_rss(tmp_path, "mirror", *source, "--to", dest.host, "--insecure", "--json")
    assert json.loads(out)["bytes_sent"] > LAYER
    assert dest.manifest_digest("big", "1") == manifest.digest
    assert rss < LIMIT, f"podinfra mirror peaked at {rss / MIB:.0f} MiB for a {LAYER // MIB} MiB layer"

    bundle = tmp_path / "big.tar"
    rss, _ = peak_rss(tmp_path, "export", *source, "-o", str(bundle))
    assert bundle.stat().st_size > LAYER
    assert rss < LIMIT, f"podinfra export peaked at {rss / MIB:.0f} MiB"

    fresh = start_registry()
    rss, out = peak_rss(tmp_path, "import", str(bundle), "--to", fresh.host, "--insecure", "--json")
    assert json.loads(out)["blobs_uploaded"] == 3
    assert fresh.manifest_digest("big", "1") == manifest.digest
    assert rss < LIMIT, f"podinfra import peaked at {rss / MIB:.0f} MiB"
