"""CRI calls from a node's shell (curl over HTTP/2): replies as curl prints them in, values out; and the
CRI-O old-pause operation built on them, facts in, commands out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cri_api.v1 import api_pb2 as cri

from podinfra.node import cri_curl, facts, operations
from tests.unit.test_operations import FakeHost, commands, fact

OLD, NEW = "registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10.1"


def answer(message: Any, status: str = "0", error: str = "") -> list[str]:
    """What :func:`cri_curl.command` prints for a reply: headers, trailers, then the body in base64."""
    payload = message.SerializeToString()
    frame = b"\0" + len(payload).to_bytes(4, "big") + payload
    trailers = [f"grpc-status: {status}"] + ([f"grpc-message: {error}"] if error else [])
    body = base64.b64encode(frame).decode() if status == "0" else ""
    return ["HTTP/2 200", "content-type: application/grpc", "", *trailers, cri_curl.BODY, body]


def image(image_id: str, tag: str, pinned: bool = False) -> cri.Image:
    digest = f"{tag.rsplit(':', 1)[0]}@sha256:{image_id}"
    return cri.Image(id=image_id, repo_tags=[tag], repo_digests=[digest], pinned=pinned)


def by_digest(image_id: str, pinned: bool = False) -> cri.Image:
    """An image pulled by digest (sandbox_image_mode: local): CRI-O lists it with no tag."""
    return cri.Image(id=image_id, repo_digests=[f"10.0.0.2:5000/pause@sha256:{image_id}"], pinned=pinned)


def test_a_reply_is_read_and_an_error_named():
    listed = answer(cri.ListImagesResponse(images=[image("a", OLD), image("b", NEW, pinned=True)]))
    assert [(i.id, i.pinned) for i in facts.CrioImages().process(listed)] == [("a", False), ("b", True)]
    refused = answer(cri.RemoveImageResponse(), status="2", error="image%20used%20by%20abc")
    with pytest.raises(cri_curl.CRICallError, match="gRPC status 2: image used by abc"):
        cri_curl.reply(refused)
    with pytest.raises(cri_curl.CRICallError, match="no gRPC reply"):
        cri_curl.reply(["curl: (7) Couldn't connect to server", cri_curl.BODY, ""])


def test_sandboxes_and_the_pause_each_was_made_from():
    listed = answer(cri.ListPodSandboxResponse(items=[cri.PodSandbox(id="s1"), cri.PodSandbox(id="s2")]))
    assert facts.CrioSandboxes().process(listed) == ["s1", "s2"]
    infra = answer(cri.PodSandboxStatusResponse(info={"info": json.dumps({"image": OLD, "pid": 7})}))
    dropped = {"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.Image": NEW}}}  # drop_infra_ctr: no infra
    assert facts.CrioSandboxImage().process(infra) == OLD
    assert (
        facts.CrioSandboxImage().process(answer(cri.PodSandboxStatusResponse(info={"info": json.dumps(dropped)})))
        == NEW
    )
    assert "PodSandboxStatus" in facts.CrioSandboxImage().command(sandbox_id="s1")


def fake_node(stored: list[cri.Image], sandboxes: dict[str, str | None], current: str = NEW) -> FakeHost:
    images = facts.CrioImages().process(answer(cri.ListImagesResponse(images=stored)))
    now = next((i for i in images or [] if current in (*i.repo_tags, *i.repo_digests)), None)
    found = [fact(facts.CrioImages, images, socket="/s"), fact(facts.CrioSandboxes, list(sandboxes), socket="/s")]
    found.append(fact(facts.CrioImage, now, image=current, socket="/s"))
    found += [fact(facts.CrioSandboxImage, made_from, sandbox_id=s, socket="/s") for s, made_from in sandboxes.items()]
    return FakeHost(dict(found))


def released(fake: FakeHost, policy: str, current: str = NEW) -> list[str]:
    return commands(operations.crio_old_pause_released, fake, image=current, policy=policy, socket="/s")


def test_the_old_pause_is_removed_once_no_sandbox_was_made_from_it():
    stored = [image("a", OLD), image("b", NEW, pinned=True), image("c", "registry.k8s.io/podinfra/probe:1")]
    assert released(fake_node(stored, {"s1": NEW}), "remove") == ["function _crio_remove"]
    kept = fake_node(stored, {"s1": NEW, "s2": OLD})
    assert released(kept, "remove") == [] and kept.noops == [f"{OLD} is still the pause of pod sandboxes: kept"]


def test_unpin_is_cri_o_s_own_doing_and_keep_keeps():
    stored = [image("a", OLD), image("d", "registry.k8s.io/pause:3.9", pinned=True), image("b", NEW, pinned=True)]
    fake = fake_node(stored, {})
    assert released(fake, "unpin") == []
    assert fake.noops == [
        f"{OLD}: unpinned by CRI-O",
        "registry.k8s.io/pause:3.9: still pinned (CRI-O's pinned_images names it)",
    ]
    pinned = fake_node(stored, {})
    assert released(pinned, "remove") == ["function _crio_remove"]  # 3.10 alone: 3.9 is the operator's to unpin
    assert pinned.noops == ["registry.k8s.io/pause:3.9 is pinned by CRI-O's pinned_images: kept"]
    assert released(fake_node(stored, {}), "keep") == []
    alone = fake_node([image("b", NEW, pinned=True)], {})
    assert released(alone, "remove") == [] and alone.noops == ["no other pause image"]


def test_local_mode_names_images_by_digest_and_never_takes_the_current_pause_for_an_old_one():
    old, new = "1" * 64, "2" * 64
    current = f"10.0.0.2:5000/pause@sha256:{new}"
    # the current pause also carries its canonical tag (same id), as after a switch from canonical to local
    stored = [by_digest(old), cri.Image(id=new, repo_tags=[NEW], repo_digests=[current], pinned=True)]
    assert released(fake_node(stored, {"s1": current}, current), "remove", current) == ["function _crio_remove"]
    kept = fake_node(stored, {"s1": f"10.0.0.2:5000/pause:3.10@sha256:{old}"}, current)  # recorded with its tag
    assert released(kept, "remove", current) == []
    assert kept.noops == [f"10.0.0.2:5000/pause@sha256:{old} is still the pause of pod sandboxes: kept"]


def test_a_cri_o_that_does_not_say_removes_nothing():
    down = ["curl: (7) Couldn't connect to server", cri_curl.BODY, ""]
    assert facts.CrioImages().process(down) is None and facts.CrioSandboxes().process(down) is None
    gone = answer(cri.PodSandboxStatusResponse(), status="5", error="could not find pod")
    assert facts.CrioSandboxImage().process(gone) is None
    silent = FakeHost(dict([fact(facts.CrioImages, None, socket="/s")]))
    assert released(silent, "remove") == [] and silent.noops[0].startswith("CRI-O did not list its images")
    racing = fake_node([image("a", OLD), image("b", NEW)], {"s1": NEW, "s2": None})
    assert released(racing, "remove") == [] and racing.noops[0].startswith("CRI-O did not say which pause")
