"""`podinfra check`'s output at fleet size: one progress line on a terminal, per-node lines only where they fit
(or in --log), and a summary of the slowest nodes with what each waited on."""

from __future__ import annotations

import io

from podinfra.check.catalogue import CHECKS
from podinfra.check.progress import Progress, node_line
from podinfra.check.report import NodeReport, slowest


def node(name: str, duration: float, status: str = "pass", slow_check: str = "6", actual: str = "") -> NodeReport:
    results = [
        c.result(status if c.id == slow_check else "pass", actual=actual if c.id == slow_check else "") for c in CHECKS
    ]
    for r in results:
        r.duration = duration * 0.6 if r.id == slow_check else 0.01
    return NodeReport(name, results, duration)


def test_a_node_line_says_fail_warn_or_pass():
    assert node_line(node("n1", 3.21)) == "[check] n1: PASS in 3.2s"
    assert node_line(node("n2", 1, "warn")) == "[check] n2: WARN in 1.0s"
    assert node_line(node("n3", 1, "fail")) == "[check] n3: FAIL in 1.0s"


def test_off_a_terminal_every_node_is_a_log_line_and_no_bar():
    out = io.StringIO()
    progress = Progress(3, out, terminal=False)
    for i in range(3):
        progress.done(node(f"n{i}", 1.0, "fail" if i == 1 else "pass"))
    assert progress.close() == ""
    assert out.getvalue().splitlines() == [
        "[check] n0: PASS in 1.0s",
        "[check] n1: FAIL in 1.0s",
        "[check] n2: PASS in 1.0s",
    ]


def test_on_a_terminal_a_fleet_gets_one_progress_line_with_done_failed_left_and_eta():
    out, log = io.StringIO(), io.StringIO()
    progress = Progress(150, out, log, terminal=True, rows=40)
    for i in range(60):
        progress.done(node(f"n{i}", 1.0, "fail" if i % 20 == 0 else "pass"))
    shown = out.getvalue()
    assert "[check]" not in shown  # 150 nodes do not fit on 40 rows: no per-node line on the screen
    assert progress.line().startswith("podinfra check: 60/150 nodes done, 3 failed, 90 left [")
    assert "ETA" in progress.line()
    assert len(log.getvalue().splitlines()) == 60  # they are in the log
    assert progress.close() == "150 nodes do not fit on the terminal: their progress lines were kept in the --log file"


def test_on_a_terminal_few_nodes_show_their_lines_above_the_progress_line():
    out = io.StringIO()
    progress = Progress(3, out, terminal=True, rows=40)
    for i in range(3):
        progress.done(node(f"n{i}", 2.0))
    assert all(f"[check] n{i}: PASS in 2.0s\n" in out.getvalue() for i in range(3))
    assert progress.line().startswith("podinfra check: 3/3 nodes done, 0 failed, 0 left [")
    assert progress.close() == ""


def test_without_a_log_the_note_says_how_to_keep_the_lines():
    progress = Progress(100, io.StringIO(), terminal=True, rows=24)
    assert progress.close().endswith("not shown: --log FILE keeps them")


def test_the_summary_names_the_slowest_nodes_and_what_each_waited_on():
    reports = [node(f"n{i}", float(i)) for i in range(1, 9)]
    reports[2] = node("n3", 95.0, "warn", "8", "pause to become PID 1: no answer within the limit, waited 30.0s of 30s")
    lines = slowest(reports, 3)
    assert lines[0] == "slowest 3 nodes:"
    assert lines[1].startswith(
        "  n3 95.0s: 8 namespaces 57.0s (WARN: pause to become PID 1: no answer within the limit"
    )
    assert lines[2] == "  n8 8.0s: 6 registry 4.8s"
    assert lines[3] == "  n7 7.0s: 6 registry 4.2s"
    assert slowest(reports[:1]) == []  # one node: nothing to compare
