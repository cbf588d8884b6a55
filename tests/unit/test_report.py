"""podinfra check's reports: the terminal table, kube-bench's JSON shape, JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from podinfra.check import catalogue, report
from podinfra.check.catalogue import CheckResult
from podinfra.check.report import NodeReport


def results(statuses: str) -> list[CheckResult]:
    """One result per catalogue check; `statuses` like "ppfppwwwi" (pass, fail, warn, info)."""
    names = {"p": "pass", "f": "fail", "w": "warn", "i": "info"}
    return [
        CheckResult(c.id, c.name, c.description, names[s], f"want {c.id}", f"got {c.id}", c.remediation, duration=0.5)
        for c, s in zip(catalogue.CHECKS, statuses, strict=True)
    ]


REPORTS = [
    NodeReport("node1", results("ppppppppp"), 4.0),
    NodeReport("node2", results("ppfppwwwi"), 3.0, notes=["removed 1 probe sandbox(es) left by an interrupted run"]),
]


def test_a_node_that_reported_nothing_fails_every_check_said_once():
    found = report.not_run("node3", "ssh: connect to host 10.0.0.13 port 22: No route to host")
    assert found.failed and {r.status for r in found.results} == {"fail"}
    assert all(r.remediation for r in found.results)
    text = report.render([found])
    assert "FAIL node3 checks 1,2,3,4,5,6,7,8,9\n  actual:      ssh: connect" in text
    assert text.count("FAIL ") == 1


def test_kube_bench_totals():
    assert report.counts(REPORTS) == {"total_pass": 13, "total_fail": 1, "total_warn": 3, "total_info": 1}


def test_terminal_report_is_a_table_then_what_is_not_a_pass_with_its_remediation():
    text = report.render(REPORTS)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["NODE", "1", "runtime"]
    assert lines[2].split() == ["node1"] + ["pass"] * 9
    assert lines[3].split() == ["node2", "pass", "pass", "fail", "pass", "pass", "warn", "warn", "warn", "info"]
    failure = text[text.index("FAIL node2 3 mirror") :]
    assert "expected:    want 3" in failure and "actual:      got 3" in failure
    assert f"remediation: {catalogue.catalogue('3').remediation}" in failure
    assert text.count("\nFAIL ") == 1 and text.count("\nWARN ") == 3 and text.count("\nINFO ") == 1
    assert "\nINFO node2 9 running: got 9\n" in text, "INFO is one line: nothing to fix"
    assert "NOTE node2: removed 1 probe sandbox(es) left by an interrupted run" in text
    assert lines[-1] == "2 nodes: 1 passed, 1 failed (checks: 13 pass, 1 fail, 3 warn, 1 info)"
    assert report.render(REPORTS[:1]).splitlines()[-1].startswith("1 node: 1 passed")


def test_json_is_kube_benchs_shape():
    doc = report.to_json(REPORTS, "inventories/lab.py", started=0, duration=4.2)
    assert doc["started"] == "1970-01-01T00:00:00+00:00" and doc["duration_s"] == 4.2
    assert doc["Totals"] == {"total_pass": 13, "total_fail": 1, "total_warn": 3, "total_info": 1}
    node2 = doc["Controls"][1]
    assert (node2["id"], node2["node_type"], node2["total_fail"], node2["total_warn"]) == ("node2", "node", 1, 3)
    group = node2["tests"][0]
    assert (group["pass"], group["fail"], group["warn"], group["info"]) == (4, 1, 3, 1)
    mirror = group["results"][2]
    for key in ("test_number", "test_desc", "status", "actual_value", "expected_result", "remediation", "scored"):
        assert key in mirror
    assert (mirror["test_number"], mirror["status"], mirror["actual_value"]) == ("3", "FAIL", "got 3")
    assert group["results"][5]["status"] == "WARN" and group["results"][5]["reason"] == "got 6"
    assert {r["status"] for r in doc["Controls"][0]["tests"][0]["results"]} == {"PASS"}
    json.dumps(doc)


def test_junit_has_a_suite_per_node_and_a_case_per_check():
    root = ET.fromstring(report.to_junit(REPORTS))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["node1", "node2"]
    assert (suites[1].get("tests"), suites[1].get("failures"), suites[1].get("skipped")) == ("9", "1", "4")
    cases = suites[1].findall("testcase")
    assert cases[2].get("name") == "3 mirror" and cases[2].get("classname") == "podinfra.check.command.node2"
    failure = cases[2].find("failure")
    assert failure is not None and failure.get("message") == "got 3" and "remediation:" in (failure.text or "")
    skipped = cases[5].find("skipped")
    assert skipped is not None and skipped.get("message") == "WARN: got 6" and cases[0].find("failure") is None
