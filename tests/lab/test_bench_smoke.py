"""benchmarks/run.py end to end on a tiny lab of its own (1 node, 1 run, --quick): the tables and the
plot come out, and the lab is gone afterwards. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
LAB = "benchsmk"
LAB_ARGS = ("--lab", LAB, "--subnet", "10.213.19.0/24", "--upstream-port", "5119")


def test_quick_benchmark_writes_the_tables_and_the_plot(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the benchmark runner needs root (it brings up a lab)")
    pytest.importorskip("matplotlib", reason="the bench extra is not installed: pip install -e '.[bench]'")
    if not (Path(sys.executable).parent / "ansible-playbook").exists():
        pytest.skip("ansible-core (the bench extra) is not installed: pip install -e '.[bench]'")
    subprocess.run([sys.executable, "-m", "podinfra.cli", "lab", "down", "--name", LAB], capture_output=True)
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", *LAB_ARGS, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = (tmp_path / "RESULTS.md").read_text()
    for heading in ("## Targets", "## Node configuration", "## Mirror", "## `podinfra check`", "## Lab scale"):
        assert heading in text
    node_row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert node_row.count(" s") >= 4, node_row
    assert "identical at 1 node(s)" in text, "both tools must reach the same end state"
    assert "| podinfra mirror |" in text and "| skopeo sync --all |" in text
    assert "Not available: skipped with --quick." in text
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "results.json").exists()
    assert node_row in result.stdout, "the runner prints the same tables"
    assert "[bench] nodes=1 run 1/1" in result.stderr, "progress is shown"
    assert not Path(f"/var/lib/podinfra/{LAB}").exists() and not Path(f"/sys/class/net/pi-{LAB}").exists()
