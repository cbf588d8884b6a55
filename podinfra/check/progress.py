"""What `podinfra check` shows while nodes are checked, at any fleet size.

On a terminal: one progress line (tqdm) with the nodes done, failed and left and an ETA; a line per
node above it only while every node's line fits on the screen. Elsewhere (CI, a pipe): a line per
node, as a log. ``--log FILE`` keeps the per-node lines in FILE too, whatever is shown.
"""

from __future__ import annotations

import shutil
from typing import IO, Any

from tqdm import tqdm

from podinfra.check.report import NodeReport

# Lines the terminal keeps for the progress line, the prompt and a margin.
KEEP_ROWS = 3


def node_line(report: NodeReport) -> str:
    """``[check] node7: PASS in 12.3s`` (WARN when a check is not proved, FAIL when one failed)."""
    statuses = {r.status for r in report.results}
    state = "FAIL" if "fail" in statuses else "WARN" if "warn" in statuses else "PASS"
    return f"[check] {report.node}: {state} in {report.duration:.1f}s"


class Progress:
    """Told of each node as its run ends (:meth:`done`); `terminal` and `rows` are the stream's, unless given."""

    def __init__(
        self,
        total: int,
        stream: IO[str],
        log: IO[str] | None = None,
        terminal: bool | None = None,
        rows: int | None = None,
    ):
        self.total, self.stream, self.log, self.failed = total, stream, log, 0
        self.terminal = stream.isatty() if terminal is None else terminal
        rows = shutil.get_terminal_size().lines if rows is None else rows
        self.lines_fit = total <= rows - KEEP_ROWS
        self.bar: tqdm[Any] | None = None
        if self.terminal:
            self.bar = tqdm(
                total=total,
                file=stream,
                desc=self._counts(0),
                unit="node",
                bar_format="{desc} [{elapsed}, ETA {remaining}]",
                dynamic_ncols=True,
            )

    def _counts(self, done: int) -> str:
        return f"podinfra check: {done}/{self.total} nodes done, {self.failed} failed, {self.total - done} left"

    def done(self, report: NodeReport) -> None:
        self.failed += report.failed
        line = node_line(report)
        if self.log is not None:
            print(line, file=self.log, flush=True)
        if self.bar is None:
            print(line, file=self.stream, flush=True)
            return
        if self.lines_fit:
            self.bar.write(line, file=self.stream)
        self.bar.set_description_str(self._counts(int(self.bar.n) + 1), refresh=False)
        self.bar.update(1)

    def line(self) -> str:
        """The progress line as it stands ('' off a terminal)."""
        return str(self.bar) if self.bar is not None else ""

    def close(self) -> str:
        """Ends the progress line; returns a note for the report ('' when nothing was held back)."""
        if self.bar is None:
            return ""
        self.bar.close()
        if self.lines_fit:
            return ""
        kept = "kept in the --log file" if self.log is not None else "not shown: --log FILE keeps them"
        return f"{self.total} nodes do not fit on the terminal: their progress lines were {kept}"
