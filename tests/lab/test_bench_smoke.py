"""benchmarks/run.py end to end on a tiny lab of its own (1 node, 1 run, --quick): the tables and the
plot come out, and the lab is gone afterwards. No timing is asserted.

The containerd 2.1 fleet's lab comes up once the main lab is down, so it takes the same name and subnet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
LAB = "benchsmk"
SUBNET, PORT = "10.213.19.0/24", "5119"
LAB_ARGS = ("--lab", LAB, "--subnet", SUBNET, "--upstream-port", PORT)
LAB21_ARGS = ("--lab21", LAB, "--subnet21", SUBNET, "--upstream-port21", PORT)


def test_quick_benchmark_writes_the_tables_and_the_plot(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the benchmark runner needs root (it brings up a lab)")
    pytest.importorskip("matplotlib", reason="the bench extra is not installed: pip install -e '.[bench]'")
    if not (Path(sys.executable).parent / "ansible-playbook").exists():
        pytest.skip("ansible-core (the bench extra) is not installed: pip install -e '.[bench]'")
    subprocess.run([sys.executable, "-m", "podinfra.cli", "lab", "down", "--name", LAB], capture_output=True)
    runner = str(REPO / "benchmarks" / "run.py")
    result = subprocess.run(
        [sys.executable, runner, "--quick", *LAB_ARGS, *LAB21_ARGS, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = (tmp_path / "RESULTS.md").read_text()
    headings = ("## Targets", "## Node configuration", "## Node configuration on a containerd 2.1 fleet", "## Mirror")
    for heading in (*headings, "## `podinfra check`", "## Lab scale"):
        assert heading in text
    rows = [line for line in text.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 2, "a node row on each fleet"
    node_row = rows[0]
    assert all(row.count(" s") >= 4 for row in rows), rows
    assert text.count("identical at 1 node(s)") == 2, "both tools must reach the same end state on both fleets"
    assert "| podinfra mirror |" in text and "| skopeo sync --all |" in text
    assert "Not available: skipped with --quick." in text
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "results.json").exists()
    assert node_row in result.stdout, "the runner prints the same tables"
    assert "[bench] nodes=1 run 1/1" in result.stderr, "progress is shown"
    assert not Path(f"/var/lib/podinfra/{LAB}").exists() and not Path(f"/sys/class/net/pi-{LAB}").exists()
