"""A small OCI distribution client: enough to push, check and read images byte for byte.

oras-py (0.2.x) was looked at first: its `upload_manifest` re-serialises the manifest from a
dict and always sends the OCI manifest media type, so index and Docker-typed manifests would
change digest. Byte-exact copies need the raw bytes end to end, hence this client.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin, urlsplit

import requests

from podinfra.errors import PodinfraError
from podinfra.oci import ALL_MANIFEST_TYPES, Blob, digest_of


class RegistryError(PodinfraError, RuntimeError):
    """A registry request failed; the message is one line an operator can act on."""


class RegistryClient:
    """Talks to one registry, e.g. ``RegistryClient("https://10.0.0.2:5000", ca_file="ca.crt")``.

    Answers 401 challenges itself: Basic with the given credentials, or Bearer by fetching a token
    from the challenge's realm (with the credentials when given, anonymously otherwise).
    """

    def __init__(
        self,
        base_url: str,
        *,
        ca_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30,
    ):
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        self.session = requests.Session()
        # Passed on every request: a session-level verify loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify: str | bool = ca_file or True
        self.credentials = (username, password) if username is not None and password is not None else None
        self.timeout = timeout
        self._authorization: str | None = None

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: object) -> requests.Response:
        if self._authorization:
            headers = {**headers, "Authorization": self._authorization}
        try:
            return self.session.request(
                method,
                url,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
                **kwargs,  # type: ignore[arg-type]
            )
        except requests.exceptions.SSLError as exc:
            raise RegistryError(
                f"TLS to {self.host} failed ({_reason(exc)}): pass the registry's CA with --ca-file"
            ) from exc
        except requests.ConnectionError as exc:
            raise RegistryError(
                f"registry {self.host} is unreachable: check the address and that it is running"
            ) from exc
        except requests.Timeout as exc:
            raise RegistryError(f"registry {self.host} did not answer in {self.timeout:.0f}s") from exc

    def _request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: object
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        response = self._send(method, url, headers or {}, **kwargs)
        if response.status_code == 401 and self._answer(response.headers.get("WWW-Authenticate", "")):
            response = self._send(method, url, headers or {}, **kwargs)
        if response.status_code == 401:
            hint = "check the username and password" if self.credentials else "it needs credentials: --username"
            raise RegistryError(f"registry {self.host} refused authentication: {hint}")
        return response

    def _answer(self, challenge: str) -> bool:
        """Set the Authorization header a 401 challenge asks for; False when it cannot be met."""
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self.credentials:
            self._authorization = requests.auth._basic_auth_str(*self.credentials)
            return True
        if scheme.lower() == "bearer":
            fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
            if "realm" not in fields:
                return False
            query = {k: v for k, v in fields.items() if k in ("service", "scope")}
            reply = self.session.get(
                fields["realm"], params=query, auth=self.credentials, timeout=self.timeout, verify=self.verify
            )
            if reply.status_code != 200:
                return False
            body = reply.json()
            token = body.get("token") or body.get("access_token")
            self._authorization = f"Bearer {token}"
            return bool(token)
        return False

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code >= 400:
            codes = _error_codes(response)
            detail = f" ({', '.join(codes)})" if codes else ""
            raise RegistryError(f"{what}: HTTP {response.status_code}{detail} from {self.host}")
        return response

    def ping(self) -> bool:
        try:
            return self._request("GET", "/v2/").status_code == 200
        except RegistryError:
            return False

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self._request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest the registry holds for `reference`, or None when it holds none."""
        response = self._request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        )
        return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None

    def repositories(self) -> list[str]:
        """The registry's catalog, or [] where it does not offer one (it is optional in the spec)."""
        response = self._request("GET", "/v2/_catalog?n=1000")
        return list(response.json().get("repositories", [])) if response.status_code == 200 else []

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: the registry links a blob it already holds, nothing is sent."""
        response = self._request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}")
        if response.status_code == 202 and "Location" in response.headers:
            # The registry opened an upload instead; close it so no session is left behind.
            self._request("DELETE", urljoin(self.base_url + "/", response.headers["Location"]))
        return response.status_code == 201

    def push_blob(self, repo: str, data: bytes, digest: str | None = None) -> int:
        """Upload `data` unless present; returns the bytes sent (0 when skipped)."""
        digest = digest or digest_of(data)
        if self.blob_exists(repo, digest):
            return 0
        start = self._check(self._request("POST", f"/v2/{repo}/blobs/uploads/"), f"start upload to {repo}")
        location = urljoin(self.base_url + "/", start.headers["Location"])
        separator = "&" if "?" in location else "?"
        self._check(
            self._request(
                "PUT",
                f"{location}{separator}digest={digest}",
                data=data,
                headers={"Content-Type": "application/octet-stream"},
            ),
            f"upload {digest} to {repo}",
        )
        return len(data)

    def push_manifest(self, repo: str, reference: str, manifest: Blob) -> None:
        """PUT a manifest's exact bytes. While another client commits the same blob, distribution
        briefly answers MANIFEST_BLOB_UNKNOWN for it; that answer is retried a few times."""
        for delay in (0.1, 0.2, 0.4, 0.8, 1.6, None):
            response = self._request(
                "PUT",
                f"/v2/{repo}/manifests/{reference}",
                data=manifest.data,
                headers={"Content-Type": manifest.media_type},
            )
            if delay is None or "MANIFEST_BLOB_UNKNOWN" not in _error_codes(response):
                break
            time.sleep(delay)
        self._check(response, f"push manifest {repo}:{reference}")

    def get_manifest(self, repo: str, reference: str) -> Blob:
        response = self._check(
            self._request(
                "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}
            ),
            f"get manifest {repo}:{reference}",
        )
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return Blob(media_type, response.content)

    def get_blob(self, repo: str, digest: str) -> bytes:
        return self._check(self._request("GET", f"/v2/{repo}/blobs/{digest}"), f"get blob {digest}").content


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known in (
        "certificate verify failed: unable to get local issuer certificate",
        "self-signed certificate",
        "certificate verify failed",
        "hostname mismatch",
        "wrong version number",
    ):
        if known in text:
            return known
    return exc.__class__.__name__


_tag_digests: dict[tuple[str | None, ...], str | RegistryError] = {}


def tag_digest(
    base_url: str, repo: str, tag: str, ca_file: str | None, username: str | None, password: str | None
) -> str:
    """The digest `tag` names in a registry, asked once per run however many nodes need it (a failure
    too: an unreachable registry costs one timeout, not one per node)."""
    key = (base_url, repo, tag, ca_file, username, password)
    if key not in _tag_digests:
        client = RegistryClient(base_url, ca_file=ca_file, username=username, password=password)
        try:
            digest = client.manifest_digest(repo, tag)
            _tag_digests[key] = digest or RegistryError(
                f"{client.host}/{repo}:{tag} is not in the registry: mirror it first (deploys/mirror.py)"
            )
        except RegistryError as e:
            _tag_digests[key] = e
    answer = _tag_digests[key]
    if isinstance(answer, RegistryError):
        raise answer
    return answer


def _error_codes(response: requests.Response) -> list[str]:
    """The distribution spec's error codes in a response body, e.g. ["MANIFEST_BLOB_UNKNOWN"]."""
    try:
        return [str(error.get("code")) for error in response.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []
