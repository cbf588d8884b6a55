"""The README's own-fleet inventory (its "mine.py"), read from the README so that one copy is maintained
and a test runs it: copy that block, change names, addresses and secrets.

    pyinfra -y inventories/airgap-example.py podinfra.deploys.local_registry --limit k8s_registry
    pyinfra -y inventories/airgap-example.py podinfra.deploys.node_runtime --limit k8s_workers
    podinfra check inventories/airgap-example.py --group k8s_workers

It reads secrets/pull.pw and secrets/push.pw from the working directory. Every key podinfra reads is in
the README's table (podinfra/data/models.py).
"""

import re
from pathlib import Path

_README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
exec(re.search(r"<!-- example: file mine.py -->\n```python\n(.*?)```", _README, re.DOTALL)[1])
