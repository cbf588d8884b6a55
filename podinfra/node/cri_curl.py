"""CRI calls from a node's own shell, for the node deploy: gRPC over HTTP/2 with curl (no agent, and no
crictl, on the node), the messages made and read on the control host with the CRI's protobuf stubs.

gRPC over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md): ``POST /runtime.v1.ImageService/METHOD`` with
``content-type: application/grpc``; the body is one length-prefixed message (a 0 byte: not compressed,
4 bytes big-endian length, the protobuf); the status comes as ``grpc-status`` (and ``grpc-message``) in the
trailers, or in the headers of a reply that has no body.

    command = image_status_command("/var/run/crio/crio.sock", "registry.k8s.io/pause:3.10")
    found = image_status(output_lines)   # ImageStatus, or None when the runtime has no such image
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from cri_api.v1 import api_pb2 as cri

from podinfra.node.crio import sandbox_pause

BODY = "--- body"
IMAGES = "runtime.v1.ImageService"
RUNTIME = "runtime.v1.RuntimeService"


class CRICallError(RuntimeError):
    """The runtime did not answer, or answered with an error: one line."""


def command(socket: str, method: str, request: Any, timeout: int = 30) -> str:
    """A shell command calling `method` (``SERVICE/METHOD``) with `request` on the CRI at `socket`; its output
    (headers, trailers, then the reply's body in base64 after `BODY`) is read by :func:`reply`."""
    payload = request.SerializeToString()
    frame = base64.b64encode(b"\0" + len(payload).to_bytes(4, "big") + payload).decode()
    return (
        f't=$(mktemp -d) && echo {frame} | base64 -d > "$t/request" && '
        f"curl -sS --max-time {timeout} --http2-prior-knowledge --unix-socket {shlex.quote(socket)} "
        "-H 'content-type: application/grpc' -H 'te: trailers' "
        f'--data-binary @"$t/request" -D - -o "$t/body" http://localhost/{method} 2>&1; '
        f'echo "{BODY}"; base64 -w0 < "$t/body" 2>/dev/null; echo; rm -rf "$t"'
    )


def reply(lines: list[str]) -> bytes:
    """The reply's message (protobuf bytes) in a :func:`command`'s output; CRICallError when there is none."""
    status, message, headers = None, "", []
    body = b""
    for index, line in enumerate(lines):
        if line.strip() == BODY:
            body = base64.b64decode("".join(lines[index + 1 :]).strip() or b"")
            break
        name, _, value = line.partition(":")
        if name.strip().lower() == "grpc-status":
            status = value.strip()
        elif name.strip().lower() == "grpc-message":
            message = unquote(value.strip())
        else:
            headers.append(line.strip())
    if status is None:
        seen = " ".join(h for h in headers if h)[:300]
        raise CRICallError(f"no gRPC reply from the runtime's socket ({seen or 'nothing'})")
    if status != "0":
        raise CRICallError(f"gRPC status {status}: {message}")
    if len(body) < 5:
        raise CRICallError("an empty gRPC reply")
    return body[5 : 5 + int.from_bytes(body[1:5], "big")]


@dataclass(frozen=True)
class ImageStatus:
    """An image as the runtime's image service reports it; ``pinned`` is the runtime's own word."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    pinned: bool


def image_status_command(socket: str, image: str) -> str:
    return command(socket, f"{IMAGES}/ImageStatus", cri.ImageStatusRequest(image=cri.ImageSpec(image=image)))


def _image(image: Any) -> ImageStatus:
    return ImageStatus(image.id, tuple(image.repo_tags), tuple(image.repo_digests), bool(image.pinned))


def image_status(lines: list[str]) -> ImageStatus | None:
    found = cri.ImageStatusResponse.FromString(reply(lines))
    return _image(found.image) if found.HasField("image") and found.image.id else None


def list_images_command(socket: str) -> str:
    return command(socket, f"{IMAGES}/ListImages", cri.ListImagesRequest())


def images(lines: list[str]) -> list[ImageStatus]:
    return [_image(image) for image in cri.ListImagesResponse.FromString(reply(lines)).images]


def remove_image_command(socket: str, image_id: str) -> str:
    return command(socket, f"{IMAGES}/RemoveImage", cri.RemoveImageRequest(image=cri.ImageSpec(image=image_id)))


def sandboxes_command(socket: str) -> str:
    return command(socket, f"{RUNTIME}/ListPodSandbox", cri.ListPodSandboxRequest())


def sandboxes(lines: list[str]) -> list[str]:
    """The ids of every pod sandbox, whatever its state."""
    return [s.id for s in cri.ListPodSandboxResponse.FromString(reply(lines)).items]


def sandbox_image_command(socket: str, sandbox_id: str) -> str:
    return command(
        socket, f"{RUNTIME}/PodSandboxStatus", cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
    )


def sandbox_image(lines: list[str]) -> str:
    """The pause image a sandbox was made from (its verbose status: the infra container's, or its spec's)."""
    info = json.loads(cri.PodSandboxStatusResponse.FromString(reply(lines)).info.get("info", "{}"))
    return sandbox_pause(info)[0]


def pull_command(socket: str, image: str, timeout: int = 300) -> str:
    request = cri.PullImageRequest(image=cri.ImageSpec(image=image))
    return command(socket, f"{IMAGES}/PullImage", request, timeout=timeout)


def pulled(lines: list[str]) -> str:
    """The image reference PullImage answered with (CRICallError naming the runtime's error otherwise)."""
    return str(cri.PullImageResponse.FromString(reply(lines)).image_ref)
