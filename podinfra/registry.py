"""A small OCI distribution client: enough to push, check and read images byte for byte.

oras-py (0.2.x) was looked at first: its `upload_manifest` re-serialises the manifest from a
dict and always sends the OCI manifest media type, so index and Docker-typed manifests would
change digest. Byte-exact copies need the raw bytes end to end, hence this client.
"""

from __future__ import annotations

from urllib.parse import urljoin

import requests

from podinfra.oci import ALL_MANIFEST_TYPES, Blob, digest_of


class RegistryError(RuntimeError):
    """A registry request failed; the message is one line an operator can act on."""


class RegistryClient:
    """Talks to one registry, e.g. ``RegistryClient("http://127.0.0.1:5000")``."""

    def __init__(self, base_url: str, session: requests.Session | None = None, timeout: float = 30):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout

    def _request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        try:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)  # type: ignore[arg-type]
        except requests.ConnectionError as exc:
            raise RegistryError(f"registry {self.base_url} is unreachable: {exc.__class__.__name__}") from exc

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        if response.status_code >= 400:
            raise RegistryError(f"{what}: HTTP {response.status_code} from {self.base_url}")
        return response

    def ping(self) -> bool:
        try:
            return self._request("GET", "/v2/").status_code == 200
        except RegistryError:
            return False

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self._request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 200

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
        self._check(
            self._request(
                "PUT",
                f"/v2/{repo}/manifests/{reference}",
                data=manifest.data,
                headers={"Content-Type": manifest.media_type},
            ),
            f"push manifest {repo}:{reference}",
        )

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
