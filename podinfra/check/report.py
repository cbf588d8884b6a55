"""`podinfra check`'s reports: the terminal table, kube-bench's JSON, and JUnit XML.

kube-bench's JSON (``kube-bench --json``) has ``Controls``, each with ``tests`` groups of
``results`` (``test_number``, ``test_desc``, ``status`` PASS/FAIL/WARN/INFO, ``actual_value``,
``expected_result``, ``remediation``, ...) and ``total_pass/fail/warn/info``, and ``Totals``.
Here each node is one Control; tools that read kube-bench JSON (``jq .Totals.total_fail``) read this.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from podinfra import table
from podinfra.check.catalogue import CHECKS, STATUSES, Check, CheckResult
from podinfra.table import plural

VERSION = "podinfra-1"
GROUP = "Pod sandbox image (pause)"


@dataclass
class NodeReport:
    node: str
    results: list[CheckResult] = field(default_factory=list)
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the run did besides checking (leftovers removed)

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.results)


def not_run(node: str, reason: str, duration: float = 0.0, checks: Sequence[Check] = CHECKS) -> NodeReport:
    """Every check failed for a node whose run reported nothing (SSH down, suite crashed, timed out)."""
    fix = "The checks did not run to the end on this node: fix what `actual` says, then check again."
    results = [c.result("fail", actual=reason, remediation=fix) for c in checks]
    return NodeReport(node, results, duration)


def timed_out(node: str, limit: float, duration: float, checks: Sequence[Check] = CHECKS) -> NodeReport:
    """Every check WARN (not proved) for a node whose run passed `podinfra check --timeout`: slow is not FAIL."""
    fix = (
        "The node was too slow for its checks to end within `podinfra check --timeout`: check it again when it "
        "is less busy, or give it more time (--timeout, and host data check_probe_timeout for each check's waits)."
    )
    actual = f"not checked: the node's run passed --timeout {limit:g}s"
    return NodeReport(node, [c.result("warn", actual=actual, remediation=fix) for c in checks], duration)


def counts(reports: Sequence[NodeReport]) -> dict[str, int]:
    """kube-bench's totals: ``total_pass``, ``total_fail``, ``total_warn``, ``total_info``."""
    return {f"total_{s}": sum(r.status == s for n in reports for r in n.results) for s in STATUSES}


def render(reports: Sequence[NodeReport]) -> str:
    """The terminal report: nodes by checks, then each failure and warning with its remediation."""
    widest = max(reports, key=lambda n: len(n.results), default=None)
    headers = ("NODE", *(f"{r.id} {r.name}" for r in (widest.results if widest else [])))
    rows = [(n.node, *(r.status for r in n.results)) for n in reports]
    lines = [table.render(headers, rows)]
    for report in reports:
        lines += [f"\nNOTE {report.node}: {note}" for note in report.notes]
        shown = [r for r in report.results if r.status != "pass"]
        failed = [r for r in shown if r.status == "fail"]
        if len(failed) > 1 and len({(r.actual, r.remediation) for r in failed}) == 1 and len(failed) == len(shown):
            # One cause for every check (node unreachable, bad data): say it once.
            ids = ",".join(r.id for r in failed)
            lines += ["", f"FAIL {report.node} checks {ids}", f"  actual:      {failed[0].actual or '-'}"]
            lines.append(f"  remediation: {failed[0].remediation}")
            continue
        for r in shown:
            if r.status == "info":  # worth knowing, nothing to fix: one line
                lines += ["", f"INFO {report.node} {r.id} {r.name}: {r.actual}"]
                continue
            lines += [
                "",
                f"{r.status.upper()} {report.node} {r.id} {r.name}: {r.description}",
                f"  expected:    {r.expected or '-'}",
                f"  actual:      {r.actual or '-'}",
                f"  remediation: {r.remediation}",
            ]
    t = counts(reports)
    failed_nodes = sum(n.failed for n in reports)
    lines += [
        "",
        f"{plural(len(reports), 'node')}: {len(reports) - failed_nodes} passed, {failed_nodes} failed "
        f"(checks: {t['total_pass']} pass, {t['total_fail']} fail, {t['total_warn']} warn, {t['total_info']} info)",
    ]
    return "\n".join(lines)


def _why(r: CheckResult) -> str:
    return f" ({r.status.upper()}: {r.actual[:160]})" if r.status != "pass" else ""


def slowest(reports: Sequence[NodeReport], count: int = 5) -> list[str]:
    """The `count` slowest nodes, each with the checks it spent most on and what they waited on (their actual
    when not a pass): where a fleet's check time went."""
    ranked = sorted(reports, key=lambda n: n.duration, reverse=True)[:count]
    if len(reports) < 2 or not ranked:
        return []
    lines = [f"slowest {plural(len(ranked), 'node')}:"]
    for n in ranked:
        spent = sorted((r for r in n.results if r.duration >= 0.05), key=lambda r: r.duration, reverse=True)[:2]
        waits = [
            f"{r.id} {r.name} {r.duration:.1f}s"
            + (f" ({r.status.upper()}: {r.actual[:160]})" if r.status != "pass" else "")
            for r in spent
        ]
        lines.append(f"  {n.node} {n.duration:.1f}s" + (f": {'; '.join(waits)}" if waits else ""))
    return lines


def _result(r: CheckResult) -> dict[str, Any]:
    return {
        "test_number": r.id,
        "test_desc": f"{r.name}: {r.description}",
        "audit": "",
        "AuditEnv": "",
        "AuditConfig": "",
        "type": "",
        "remediation": r.remediation,
        "test_info": [r.remediation],
        "status": r.status.upper(),
        "actual_value": r.actual,
        "scored": True,
        "IsMultiple": False,
        "expected_result": r.expected,
        "reason": r.actual if r.status in ("warn", "info") else "",
        "duration_s": round(r.duration, 3),
    }


def to_json(reports: Sequence[NodeReport], inventory: str, started: float, duration: float) -> dict[str, Any]:
    """kube-bench's shape: a Control per node (``text`` is the node), one test group, a result per check."""
    controls = []
    for n in reports:
        total = counts([n])
        group = {
            "section": "1",
            "type": "",
            **{s: total[f"total_{s}"] for s in STATUSES},
            "desc": GROUP,
            "results": [_result(r) for r in n.results],
        }
        controls.append(
            {
                "id": n.node,
                "version": VERSION,
                "detected_version": "",
                "text": f"podinfra node checks: {n.node}",
                "node_type": "node",
                "tests": [group],
                **total,
                "node": n.node,
                "duration_s": round(n.duration, 2),
                "notes": n.notes,
            }
        )
    return {
        "Controls": controls,
        "Totals": counts(reports),
        "tool": "podinfra check",
        "inventory": inventory,
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_s": round(duration, 2),
    }


def to_junit(reports: Sequence[NodeReport]) -> str:
    """JUnit XML: a test suite per node, a test case per check; FAIL is a failure (expected, actual, fix),
    WARN and INFO are skipped with their reason."""
    suites = ET.Element("testsuites", name="podinfra check")
    for n in reports:
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=n.node,
            tests=str(len(n.results)),
            failures=str(sum(r.status == "fail" for r in n.results)),
            skipped=str(sum(r.status in ("warn", "info") for r in n.results)),
            errors="0",
            time=f"{n.duration:.3f}",
        )
        for r in n.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"podinfra.check.command.{n.node}",
                name=f"{r.id} {r.name}",
                time=f"{r.duration:.3f}",
            )
            if r.status == "fail":
                failure = ET.SubElement(case, "failure", message=r.actual[:500])
                failure.text = (
                    f"{r.description}\nexpected: {r.expected}\nactual: {r.actual}\nremediation: {r.remediation}"
                )
            elif r.status in ("warn", "info"):
                ET.SubElement(case, "skipped", message=f"{r.status.upper()}: {r.actual}"[:500])
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
