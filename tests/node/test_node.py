"""The eight node checks of `podinfra check`, in order; each records expected, actual and a remediation.

Checks 1-6 only read. Checks 7-8 start probe pods through the CRI and run only when 1-6 passed on
this node: a probe on a drifted node could pull from elsewhere, or re-pull the pause image and so
hide the very drift a check found.
"""

from __future__ import annotations

import hashlib
import time
import tomllib

import grpc
import pytest

from podinfra import runtime_config, versions
from podinfra.oci import ALL_MANIFEST_TYPES
from podinfra.settings import NODE_CA

from . import nodeinfo, probes
from .conftest import CRI, Node, require

BUSYBOX = "/bin/busybox"
PINNED_LABEL = "io.cri-containerd.pinned"


def _dotted(path: tuple[str, ...]) -> str:
    """A TOML key path as containerd's docs write it: plugins."io.containerd.grpc.v1.cri".sandbox_image."""
    return ".".join(f'"{key}"' if "." in key else key for key in path)


def _read(node: Node, path: str) -> str | None:
    # cat, not host.file: testinfra's File asks the node's OS first (three more commands per node).
    result = node.once("cat -- %s", path)
    return result.stdout if result.rc == 0 else None


def _containerd_dump(node: Node) -> dict[str, object]:
    dump = node.once("containerd config dump")
    if dump.rc != 0:
        pytest.fail(f"`containerd config dump` failed: {dump.stderr.strip()[:300]}")
    return tomllib.loads(dump.stdout)


def _repository(name: str) -> str:
    """``10.0.0.2:5000/mirror/pause:3.10@sha256:...`` -> ``10.0.0.2:5000/mirror/pause``."""
    head, _, last = name.split("@")[0].rpartition("/")
    return f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]


def _stored(node: Node, cri: CRI, name: str) -> tuple[str | None, dict[str, str]]:
    """(digest, labels) of `name` in the runtime's image store; (None, {}) when absent."""
    if "@" in name:  # the store files a reference with a digest under REPO@DIGEST, without the tag
        name = f"{_repository(name)}@{name.split('@', 1)[1]}"
    if node.runtime == "containerd":
        listing = node.run("ctr -n k8s.io images ls %s", f"name=={name}")
        image = nodeinfo.ctr_images(listing.stdout).get(name)
        return (image.digest, image.labels) if image else (None, {})
    info = cri.get().image_status(name)
    if info is None:
        return None, {}
    digests = [d.split("@", 1)[1] for d in info.repo_digests if d.split("@", 1)[0] == _repository(name)]
    return (digests[0] if digests else None), {}


@pytest.mark.check("1")
def test_runtime_answers_on_its_cri_socket(node: Node, cri: CRI, record):
    record.expected = f"{node.runtime} {node.version} answering CRI v1 on {cri.socket}"
    runtime = cri.get()
    name, version = cri.answer
    record.actual = f"{name} {version} on {cri.socket}"
    if cri.removed_leftovers:
        record.actual += f" (removed {cri.removed_leftovers} probe sandbox(es) left by an interrupted run)"
    assert runtime is not None and name, record.actual


@pytest.mark.check("2")
def test_effective_config_names_the_sandbox_image(node: Node, record):
    expect = node.expect
    if node.runtime == "cri-o":  # from crio.conf(5) and `crio status`; not run on a CRI-O node here
        record.expected = f"[crio.image] pause_image = {expect.sandbox_image!r} in `crio status config`"
        status = node.run("crio status config")
        assert status.rc == 0, f"`crio status config` failed: {status.stderr.strip()[:300]}"
        image = nodeinfo.lookup(tomllib.loads(status.stdout), ("crio", "image", "pause_image"))
        record.actual = f"pause_image = {image!r}"
        assert image == expect.sandbox_image, record.actual
        return
    shape = runtime_config.containerd_shape(node.version)
    path = _dotted(shape.sandbox_path)
    record.expected = f"config version {shape.config_version}, {path} = {expect.sandbox_image!r}, no ignored 1.x keys"
    dump = _containerd_dump(node)
    image = nodeinfo.lookup(dump, shape.sandbox_path)
    version = dump.get("version")
    problems = []
    # containerd 2.3 (version 4) reads version 3 files as they are.
    if version != shape.config_version and not (shape.config_version == 4 and version == 3):
        problems.append(f"effective config is version {version}, containerd {node.version} uses {shape.config_version}")
    if image != expect.sandbox_image:
        problems.append(f"{path} = {image!r}")
    on_disk = _read(node, expect.settings.containerd_config)
    stale = runtime_config.stale_keys(on_disk, node.version) if on_disk else []
    if stale:
        problems.append(
            f"{expect.settings.containerd_config} sets {', '.join(stale)}, ignored by containerd {node.version}"
        )
    record.actual = "; ".join(problems) or f"version {version}, {path} = {image!r}"
    assert not problems, record.actual


@pytest.mark.check("3")
def test_mirror_config_sends_pulls_to_the_local_registry_only(node: Node, record):
    settings = node.expect.settings
    registries = (*settings.mirrored, settings.registry)
    if node.runtime == "cri-o":  # containers-registries.conf(5); not run on a CRI-O node here
        record.expected = (
            f"registries.conf entries for {', '.join(settings.mirrored)} with location {settings.registry}"
        )
        listing = node.run("cat /etc/containers/registries.conf /etc/containers/registries.conf.d/*.conf 2>/dev/null")
        problems = []
        for upstream in settings.mirrored:
            entry = nodeinfo.crio_registry([listing.stdout], upstream) or {}
            locations = [str(entry.get("location", upstream))]
            locations += [str(m.get("location", "")) for m in entry.get("mirror", []) if isinstance(m, dict)]
            wrong = [loc for loc in locations if loc.split("/")[0] != settings.registry]
            if wrong:
                problems.append(f"{upstream}: {', '.join(wrong)}")
        record.actual = "; ".join(problems) or "every entry names the local registry"
        assert not problems, record.actual
        return
    shape = runtime_config.containerd_shape(node.version)
    record.expected = (
        f"{_dotted(shape.config_path_path)} = {settings.certs_dir!r}; hosts.toml for {', '.join(registries)} with "
        f"`server` and every host at {settings.registry}" + (", its CA on the node" if settings.ca else "")
    )
    problems, seen = [], []
    config_path = nodeinfo.lookup(_containerd_dump(node), shape.config_path_path)
    if config_path != settings.certs_dir:
        problems.append(f"config_path = {config_path!r}: containerd does not read {settings.certs_dir}")
    ca_digest = hashlib.sha256(settings.ca.read_bytes()).hexdigest() if settings.ca else None
    for upstream in registries:
        path = f"{settings.certs_dir}/{upstream}/hosts.toml"
        text = _read(node, path)
        if text is None:
            problems.append(f"{path} is missing: pulls of {upstream} go to {upstream} itself")
            continue
        try:
            endpoints = nodeinfo.hosts_endpoints(text)
            server = nodeinfo.has_server(text)
        except tomllib.TOMLDecodeError as e:
            problems.append(f"{path} is not TOML ({e})")
            continue
        if not server:
            problems.append(f"{path} has no `server`: containerd falls back to https://{upstream}")
        for endpoint in endpoints:
            if endpoint.netloc != settings.registry:
                problems.append(f"{path}: {endpoint.url} is not the local registry {settings.registry}")
            if settings.ca and endpoint.url.startswith("https://"):
                if not endpoint.ca:
                    problems.append(f"{path}: {endpoint.url} has no `ca`")
                for ca in endpoint.ca:
                    held = node.once("sha256sum %s", ca)
                    if held.rc != 0:
                        problems.append(f"{path}: CA file {ca} is missing on the node")
                    elif held.stdout.split()[0] != ca_digest:
                        problems.append(f"{path}: CA file {ca} is not the registry's CA ({settings.ca})")
        if not any({"pull", "resolve"} <= set(e.capabilities) for e in endpoints):
            problems.append(f"{path}: no host may pull and resolve")
        seen.append(upstream)
    record.actual = "; ".join(problems) or f"config_path {config_path}; {', '.join(seen)} -> {settings.registry} only"
    assert not problems, record.actual


@pytest.mark.check("4")
def test_kubelet_flag_agrees_with_the_runtime(node: Node, record):
    settings, image = node.expect.settings, node.expect.sandbox_image
    takes_flag = versions.kubelet_takes_pause_flag(settings.kubernetes_version)
    path = settings.kubelet_flags_file
    record.expected = (
        f"--pod-infra-container-image={image} in {path}"
        if takes_flag
        else f"no --pod-infra-container-image in {path} (Kubernetes {settings.kubernetes_version} refuses it)"
    )
    text = _read(node, path)
    flag = nodeinfo.kubelet_pause_flag(text)
    if text is None:
        record.actual = f"{path} is missing"
    else:
        record.actual = f"--pod-infra-container-image={flag}" if flag else "no --pod-infra-container-image"
    assert flag == (image if takes_flag else None), record.actual


@pytest.mark.check("5")
def test_pause_image_is_stored_with_its_digest_and_pinned(node: Node, cri: CRI, record):
    expect = node.expect
    record.expected = f"{expect.store_name} at {expect.digest or '(digest unknown)'} ({expect.digest_source}), pinned"
    digest, labels = _stored(node, cri, expect.store_name)
    if digest is None:
        record.actual = f"{expect.store_name} is not in the image store"
        pytest.fail(record.actual)
    reported = cri.get().image_status(expect.store_name)
    cri_pinned = bool(reported and reported.pinned)
    problems = []
    if expect.digest is None:
        problems.append(f"expected digest {expect.digest_source}; set host data pause_digest")
    elif digest != expect.digest:
        problems.append(f"digest {digest}")
    if node.runtime == "containerd":
        label = labels.get(PINNED_LABEL)
        shape = f"label {PINNED_LABEL}={label or '(none)'}, CRI pinned={str(cri_pinned).lower()}"
        if label != "pinned":
            problems.append(shape)
        elif not cri_pinned and node.version.startswith("1.6."):
            # containerd 1.6 keeps the label but its CRI does not honour it; 1.7 added pinned images.
            shape += " (containerd 1.6 keeps the label but does not honour it: GC protection comes from the kubelet)"
        elif not cri_pinned:
            problems.append(shape)
    else:
        shape = f"CRI pinned={str(cri_pinned).lower()}"
        if not cri_pinned:
            problems.append(shape)
    record.actual = "; ".join(problems) or f"{expect.store_name} at {digest}, {shape}"
    assert not problems, record.actual


def _mirror_route(node: Node) -> tuple[str, str, str]:
    """(URL of the pause manifest as the runtime would ask for it, CA file on the node, where the route came from)."""
    expect, settings = node.expect, node.expect.settings
    repo = "pause" if settings.mode == "canonical" else expect.repository
    fallback_root = f"https://{settings.registry}/v2" + (
        f"/{settings.prefix}" if settings.prefix and settings.mode == "canonical" else ""
    )
    route, ca, source = fallback_root, NODE_CA, "inventory (no hosts.toml)"
    if node.runtime == "containerd":
        path = f"{settings.certs_dir}/{expect.mirror_for}/hosts.toml"
        text = _read(node, path)
        try:
            endpoints = [e for e in nodeinfo.hosts_endpoints(text) if "resolve" in e.capabilities] if text else []
        except tomllib.TOMLDecodeError:
            endpoints = []
        if endpoints:
            route, source = endpoints[0].api_root, path
            ca = endpoints[0].ca[0] if endpoints[0].ca else NODE_CA
    return f"{route}/{repo}/manifests/{settings.pause_tag}", ca, source


@pytest.mark.check("6")
def test_node_resolves_pause_at_its_mirror_and_not_upstream(node: Node, record):
    expect, settings = node.expect, node.expect.settings
    url, ca, source = _mirror_route(node)
    gap = f"{expect.airgap_probe} unreachable" if expect.airgap_probe else "air gap not checked (no airgap_probe)"
    record.expected = f"HTTP 200 with digest {expect.digest or '(any)'} at the node's mirror; {gap}"
    command = f"curl -sS -m 10 -o /dev/null -D - -H 'Accept: {', '.join(ALL_MANIFEST_TYPES)}'"
    if settings.ca:
        command += f" --cacert '{ca}'"
    stdin = b""
    if settings.pull_password:  # on stdin: no command line on either side ever shows it
        command += " -K -"
        stdin = nodeinfo.curl_config(settings.pull_user or "pull", settings.pull_password)
    reply = node.run_input(f"{command} '{url}'", stdin)
    status, headers = nodeinfo.http_reply(reply.stdout.decode(errors="replace"))
    digest = headers.get("docker-content-digest")
    problems = []
    if reply.returncode != 0 or status != 200:
        error = reply.stderr.decode(errors="replace").strip()[:300]
        problems.append(
            f"{url} (from {source}): " + (f"HTTP {status}" if status else error or f"rc {reply.returncode}")
        )
        record.remediation = (
            f"The node cannot resolve pause:{settings.pause_tag} at {url}: mirror it into the registry that URL names "
            "(deploys/mirror.py, or `podinfra mirror`), or point hosts.toml at the registry that holds it "
            "(deploys/node.py); for TLS or 401 errors, check the CA and the pull credentials."
        )
    elif expect.digest and digest != expect.digest:
        problems.append(f"{url} serves {digest}")
    if expect.airgap_probe:
        probe = node.run("curl -sS -m 3 -o /dev/null %s", f"http://{expect.airgap_probe}/")
        # 6: no name, 7: no route or refused, 28: timed out; anything else means a connection was made.
        if probe.rc not in (6, 7, 28):
            problems.append(f"the node reached the upstream {expect.airgap_probe} (curl rc {probe.rc})")
            record.remediation = (
                f"The node reaches {expect.airgap_probe}, which the inventory says it must not (airgap_probe): "
                "remove its route or open firewall rule to the upstream."
            )
        else:
            gap = f"{expect.airgap_probe} unreachable ({probe.stderr.strip().removeprefix('curl: ')[:120]})"
    record.actual = "; ".join(problems) or f"{url} (from {source}): HTTP 200, {digest}; {gap}"
    assert not problems, record.actual


@pytest.mark.check("7")
def test_probe_sandbox_starts_from_the_expected_pause(node: Node, cri: CRI, record, request):
    require(request.config, node.name, record, ("1", "2", "3", "4", "5", "6"))
    expect = node.expect
    record.expected = (
        f"Ready within {expect.probe_timeout:.0f}s from {expect.sandbox_image} ({expect.digest}), a pod IP, removed"
    )
    runtime = cri.get()
    started = time.monotonic()
    with probes.probe_sandbox(runtime) as sandbox_id:
        status = runtime.sandbox_status(sandbox_id)
        while status.state != "SANDBOX_READY" and time.monotonic() - started < expect.probe_timeout:
            time.sleep(0.2)
            status = runtime.sandbox_status(sandbox_id)
        ready = time.monotonic() - started
        digest, _ = _stored(node, cri, status.image) if status.image else (None, {})
    gone = sandbox_id not in runtime.sandboxes()
    problems = []
    if status.state != "SANDBOX_READY":
        problems.append(f"{status.state} after {ready:.1f}s")
    if digest is None or digest != expect.digest:
        problems.append(f"sandbox image {status.image or '(none)'} is {digest}")
    if not status.ip:
        problems.append("no pod IP")
    if not gone:
        problems.append(f"sandbox {sandbox_id[:12]} still listed after removal")
    record.actual = "; ".join(problems) or (
        f"Ready in {ready:.2f}s from {status.image} ({digest}), IP {status.ip}, removed"
    )
    assert not problems, record.actual


def _sh(runtime, container: str, script: str, timeout: int = 10) -> str:
    result = runtime.exec_sync(container, [BUSYBOX, "sh", "-c", script], timeout=timeout)
    if result.exit_code != 0:
        raise AssertionError(f"`{script}` exited {result.exit_code}: {(result.stderr or result.stdout).strip()[:200]}")
    return result.stdout


@pytest.mark.check("8")
def test_pause_holds_the_pods_namespaces(node: Node, cri: CRI, record, request):
    require(request.config, node.name, record, ("1", "2", "3", "4", "5", "6", "7"))
    image = node.expect.probe_image
    if image is None:
        record.actual = "not run: check_probe_image is false"
        pytest.skip(record.actual)
    record.expected = (
        "pause is PID 1 and reaps an orphan; the app sees the pod IP on eth0, keeps it after a kill and restart; "
        "stopping the sandbox stops the app"
    )
    runtime = cri.get()
    steps: list[str] = []
    try:
        if runtime.image_status(image) is None:
            runtime.pull(image)
    except grpc.RpcError as e:
        record.actual = f"cannot pull the probe image {image}: {e.details()}"  # type: ignore[attr-defined]
        record.remediation = f"Mirror {image} into the local registry (host data mirror_images, deploys/mirror.py)."
        raise
    command = [BUSYBOX, "sleep", "3600"]
    with probes.probe_sandbox(runtime, share_pid=True) as sandbox_id:
        ip = runtime.sandbox_status(sandbox_id).ip
        app = runtime.create_container(sandbox_id, "app", image, command, share_pid=True)
        runtime.start_container(app)

        # Few execs (each is a runc exec on the node): one reads PID 1 and the addresses, one makes an orphan
        # (its parent, a subshell, exits at once) and watches what becomes of it.
        init, _, seen = _sh(runtime, app, f"{BUSYBOX} cat /proc/1/comm; {BUSYBOX} ip -o -4 addr show").partition("\n")
        steps.append(f"PID 1 is {init}")
        assert init == "pause", "; ".join(steps)

        orphan_script = (
            f"b={BUSYBOX}; pid=$( ($b sleep 0.3 </dev/null >/dev/null 2>&1 & echo $!) ); "
            "ppid=$($b grep PPid /proc/$pid/status 2>/dev/null | $b cut -f2); "
            "i=0; while [ -e /proc/$pid ] && [ $i -lt 50 ]; do $b sleep 0.1; i=$((i+1)); done; "
            "if [ -e /proc/$pid ]; then state=$($b grep State /proc/$pid/status | $b cut -f2); else state=reaped; fi; "
            'echo "$pid ${ppid:-gone} $state"'
        )
        orphan, parent, state = _sh(runtime, app, orphan_script).strip().split(" ", 2)
        steps.append(f"orphan {orphan} re-parented to {parent}, then {state}")
        record.actual = "; ".join(steps)
        assert parent in ("1", "gone") and state == "reaped", record.actual

        steps.append(f"app sees {ip}" if f"inet {ip}/" in seen else f"app does not see {ip}: {seen.strip()[:200]}")
        record.actual = "; ".join(steps)
        assert f"inet {ip}/" in seen, record.actual

        runtime.stop_container(app, grace=0)
        killed = runtime.container_state(app)
        runtime.remove_container(app)
        app = runtime.create_container(sandbox_id, "app", image, command, attempt=1, share_pid=True)
        runtime.start_container(app)
        again = _sh(runtime, app, f"{BUSYBOX} ip -o -4 addr show")
        kept = f"inet {ip}/" in again and runtime.sandbox_status(sandbox_id).ip == ip
        steps.append(f"app killed ({killed}) and started again: IP {'kept' if kept else 'changed'}")
        record.actual = "; ".join(steps)
        assert killed == "CONTAINER_EXITED" and kept, record.actual

        runtime.stop_sandbox(sandbox_id)
        after = runtime.container_state(app)
        steps.append(f"sandbox stopped: app {after}")
        record.actual = "; ".join(steps)
        assert after == "CONTAINER_EXITED", record.actual
    record.actual = "; ".join(steps) + "; removed"
