"""pytest plugin for the check benchmark's pytest-xdist run: `--dist loadgroup` keeps each node's checks in one
worker, in order, grouped by the testinfra host in each test id (`test_...[ssh://node1]`).

podinfra.suite.plugin marks each item `xdist_group(NODE)` for this, but here the marks never group anything:
xdist's worker reads them in its own pytest_collection_modifyitems, which runs before the plugin's (it is
registered later, and is called first); and on pytest 9.2 xdist 3.8 passes the group as a suffix written into
the item's `_nodeid`, which the node id no longer reads (pytest-dev/pytest-xdist#1386). The checks of one node
then run in several workers at once, out of order, and a worker connecting to a node can remove the probe
sandbox another worker is using there as an interrupted run's leftover (3 of 7 such runs at 3 nodes had a
failing check here). This scheduler gives xdist the grouping the marks mean; drop it once the plugin's own
grouping works.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadGroupScheduling


class ByHost(LoadGroupScheduling):
    def _split_scope(self, nodeid: str) -> str:
        host = nodeid.rpartition("[")[2].rstrip("]")
        return host if host.startswith("ssh://") else super()._split_scope(nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadGroupScheduling | None:
    return ByHost(config, log) if config.getvalue("dist") == "loadgroup" else None
