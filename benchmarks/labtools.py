"""The benchmark's lab: bring it up, provision its registry, reset nodes to lab-fresh, read end states and memory."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from podinfra.lab import image
from podinfra.lab.state import STATE_ROOT, LabError, LabState, NodeState, pid_alive

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PODINFRA = str(BIN / "podinfra")
PYINFRA = str(BIN / "pyinfra")
INVENTORY = str(REPO / "inventories" / "lab.py")
KUBERNETES_VERSION = "1.31"  # pause 3.10; the kubelet still takes --pod-infra-container-image
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)


def must(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
    return result


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores, everything but idle and iowait), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Lab:
    name: str
    state: LabState
    brought_up: bool = False  # by this run, which then also brings it down
    mem_before_kib: int | None = None  # MemAvailable before this run's `lab up`
    mem_after_kib: int | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PODINFRA_LAB": self.name, "PODINFRA_KUBERNETES_VERSION": KUBERNETES_VERSION}

    @property
    def nodes(self) -> list[NodeState]:
        return [n for n in self.state.nodes if n.group == "nodes"]

    @property
    def registry(self) -> NodeState:
        return next(n for n in self.state.nodes if n.group == "registry")

    @property
    def pki(self) -> Path:
        return self.state.config.root / "pki"

    def ssh(self, node: str, script: str) -> subprocess.Popen[str]:
        """Run `script` with sh on `node` through the lab's ssh_config (key and pinned known_hosts)."""
        process = subprocess.Popen(
            ["ssh", "-F", str(self.state.ssh_config), node, "sh -s"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None
        process.stdin.write(script)
        process.stdin.close()
        return process

    def on_all(self, scripts: dict[str, str]) -> dict[str, str]:
        """Each node's script, all at once; their outputs, or an error naming the nodes that failed."""
        processes = {name: self.ssh(name, script) for name, script in scripts.items()}
        outputs, failed = {}, []
        for name, process in processes.items():
            assert process.stdout is not None and process.stderr is not None
            outputs[name] = process.stdout.read()
            error = process.stderr.read()
            if process.wait() != 0:
                failed.append(f"{name}: {error.strip()[-500:]}")
        if failed:
            raise RuntimeError("on nodes: " + "; ".join(failed))
        return outputs


def ensure_lab(name: str, nodes: int, subnet: str, upstream_port: int, containerd: str) -> Lab:
    """The lab `name` with at least `nodes` nodes on the containerd lines `containerd` ("1.6", or "1.6,2.1"
    given in turn), up and with its registry holding the pause image."""
    try:
        state: LabState | None = LabState.load(name)
    except LabError:
        state = None
    brought_up, before, after = False, None, None
    down = f"`podinfra lab down --name {name}`"
    if state is not None and state.config.nodes < nodes:
        raise LabError(f"lab {name} has {state.config.nodes} nodes, {nodes} wanted: {down}")
    if state is not None and ",".join(state.config.runtimes) != containerd:
        raise LabError(f"lab {name} runs containerd {','.join(state.config.runtimes)}, {containerd} wanted: {down}")
    try:
        if state is None or not all(pid_alive(n.pid, str(state.config.root)) for n in state.nodes):
            progress(f"lab up: {name}, {nodes} nodes of containerd {containerd} on {subnet}")
            before = mem_available_kib()
            args = ["lab", "up", "--name", name, "--nodes", str(nodes), "--subnet", subnet, "--containerd", containerd]
            brought_up = state is None
            must(run([PODINFRA, *args, "--upstream-port", str(upstream_port)]), "podinfra lab up")
            state = LabState.load(name)
            time.sleep(5)  # let the nodes' boot settle before memory is read
            after = mem_available_kib()
        lab = Lab(name, state, brought_up, before, after)
        progress("local registry and pause mirror (deploys/registry.py, deploys/mirror.py)")
        for deploy in ("registry", "mirror"):
            must(run([PYINFRA, "-y", INVENTORY, f"deploys/{deploy}.py"], lab.env), f"deploys/{deploy}.py")
    except Exception:
        if brought_up:
            with contextlib.suppress(OSError):  # the lab goes down whatever becomes of its logs
                keep_consoles(name)
            lab_down(name)
        raise
    return lab


def keep_consoles(name: str, where: str | None = None) -> None:
    """Copy the lab's node console logs out before it goes down: a failed `lab up` names them as the evidence."""
    logs = sorted((STATE_ROOT / name / "nodes").glob("*/console.log"))
    if logs:
        kept = Path(tempfile.mkdtemp(prefix=f"podinfra-bench-{name}-consoles-", dir=where))
        for log in logs:
            shutil.copyfile(log, kept / f"{log.parent.name}.log")
        progress(f"console logs of lab {name}'s {len(logs)} nodes kept in {kept}")


@contextlib.contextmanager
def session(name: str, nodes: int, subnet: str, upstream_port: int, containerd: str, keep: bool) -> Iterator[Lab]:
    """`ensure_lab` for the block; a lab it brought up is brought down after it (unless `keep`)."""
    lab = ensure_lab(name, nodes, subnet, upstream_port, containerd)
    try:
        yield lab
    finally:
        if lab.brought_up and not keep:
            lab_down(lab.name)


def stamp() -> dict[str, str]:
    """When a phase's results were taken, and the machine's load average then (every results meta has both)."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def labs_up() -> list[str]:
    """Every lab on this machine now (this run's and other engineers'): they share its cores."""
    return sorted(path.parent.name for path in STATE_ROOT.glob("*/state.json"))


def lab_down(name: str) -> None:
    progress(f"lab down: {name}")
    must(run([PODINFRA, "lab", "down", "--name", name]), "podinfra lab down")


# --- cold state ------------------------------------------------------------------------------------------

# As `podinfra lab reset`, but on the chosen nodes only, all at once, and with image content removed at once
# (--sync), so that the cold run's pull really fetches.
RESET = """\
set -e
cat > /etc/containerd/config.toml <<'PODINFRA_BENCH_EOF'
{config}PODINFRA_BENCH_EOF
rm -f /etc/containerd/config.toml.podinfra-*
rm -rf /etc/containerd/certs.d /etc/podinfra
rm -f /var/lib/kubelet/kubeadm-flags.env
rmdir --ignore-fail-on-non-empty /var/lib/kubelet 2>/dev/null || true
ctr -n k8s.io images ls -q | xargs -r ctr -n k8s.io images rm --sync >/dev/null
systemctl restart containerd
for _ in $(seq 100); do ctr -n k8s.io images ls -q >/dev/null 2>&1 && exit 0; sleep 0.1; done
echo "containerd did not come back" >&2
exit 1
"""


def reset(lab: Lab, names: list[str]) -> None:
    """Nodes back to lab-fresh: each its own line's stock config.toml, no certs.d, CA or kubelet flags, no
    images, containerd restarted and answering."""
    configs = {name: image.config_file(lab.state.node(name).runtime).decode() for name in names}
    lab.on_all({name: RESET.format(config=config) for name, config in configs.items()})


# --- end state --------------------------------------------------------------------------------------------

SNAPSHOT = f"""\
echo "== dump"; containerd config dump
for f in /etc/containerd/certs.d/*/hosts.toml; do echo "== hosts $f $(stat -c '%a %U:%G' "$f")"; cat "$f"; done
f=/etc/podinfra/registry-ca.crt; echo "== ca $(stat -c '%a %U:%G' $f)"; sha256sum < $f
f=/var/lib/kubelet/kubeadm-flags.env
if [ -e $f ]; then echo "== flags $(stat -c '%a %U:%G' $f)"; cat $f; else echo "== flags: none"; fi
f=/etc/containerd/config.toml; echo "== config $(stat -c '%a %U:%G' $f)"
echo "== image"; ctr -n k8s.io images ls name=={SANDBOX_IMAGE} | tail -n +2
"""


def end_state(lab: Lab, names: list[str]) -> dict[str, dict[str, str]]:
    """Per node, what the runtime ends up with: containerd's effective config, each hosts.toml (parsed,
    so comments do not count), CA, kubelet flags, file modes, the pause image record with its labels."""
    states = {}
    for name, output in lab.on_all(dict.fromkeys(names, SNAPSHOT)).items():
        sections: dict[str, str] = {}
        key = ""
        for line in output.splitlines(keepends=True):
            if line.startswith("== "):
                key = line[3:].strip()
                sections[key] = ""
            else:
                sections[key] += line
        for key in [k for k in sections if k.startswith("hosts ")]:
            sections[key] = json.dumps(tomllib.loads(sections[key]), sort_keys=True)
        states[name] = sections
    return states


def differences(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> list[str]:
    found = []
    for node in sorted(a.keys() | b.keys()):
        left, right = a.get(node, {}), b.get(node, {})
        found += [f"{node}: {key}" for key in sorted(left.keys() | right.keys()) if left.get(key) != right.get(key)]
    return found


# --- memory -----------------------------------------------------------------------------------------------


def node_processes(nspawn_pid: int) -> list[int]:
    """The node's systemd-nspawn process and every process in the node's PID namespace."""
    children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    namespace = os.readlink(f"/proc/{children[0]}/ns/pid")
    found = [nspawn_pid]
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "ns" / "pid") == namespace:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def node_pss_kib(nspawn_pid: int) -> int:
    """PSS summed over the node's processes (systemd, journald, sshd, containerd...). Kernel memory
    (page cache, tmpfs, slab) is not in it."""
    total = 0
    for pid in node_processes(nspawn_pid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _root_inotify(pid: int) -> int:
    try:
        if Path(f"/proc/{pid}/status").read_text().split("\nUid:\t", 1)[1].split()[0] != "0":
            return 0
        return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd) == "anon_inode:inotify")
    except (OSError, IndexError):
        return 0


def root_inotify_instances(pids: list[int] | None = None) -> int:
    """inotify instances held by root's processes (all, or `pids`): the kernel allows root
    fs.inotify.max_user_instances of them, and every lab process on the machine runs as root."""
    if pids is None:
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return sum(_root_inotify(pid) for pid in pids)


def inotify_limit() -> int:
    return int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def idle_cpu_per_node(nspawn_pids: list[int], seconds: float = 10.0) -> list[float]:
    """Share of one core each node's processes use over `seconds` while nothing is asked of them."""
    processes = [node_processes(pid) for pid in nspawn_pids]
    before = [_cpu_ticks(pids) for pids in processes]
    time.sleep(seconds)
    ticks = os.sysconf("SC_CLK_TCK") * seconds
    return [(_cpu_ticks(pids) - start) / ticks for pids, start in zip(processes, before, strict=True)]
