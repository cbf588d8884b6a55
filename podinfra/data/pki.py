"""The registry's secrets, made on the control host: a CA, server certificates from it, passwords
and an htpasswd file (bcrypt for the push user, salted SHA-1 for the read-only users: see ensure_htpasswd).

Every ``ensure_*`` function reuses what it finds when it still fits, so a deploy that calls them
on every run uploads the same bytes and reports no change. Keys and passwords are written 0600
into 0700 directories, atomically (a crash never leaves half a key).
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_BEFORE = timedelta(days=30)
# Node clocks may run a little behind the control host's.
BACKDATE = timedelta(minutes=5)
# The registry front checks the password on every request (Basic auth, no session): the cost is paid
# per blob a node pulls. 10 is about 70 ms here; 12 would be 4x that. Only the push user pays it.
BCRYPT_ROUNDS = 10
SSHA = "{SSHA}"  # nginx's auth_basic reads it: base64(sha1(password + salt) + salt)

IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PkiError(RuntimeError):
    """Existing material cannot be used as is; the message says which file and what to do."""


def ensure_ca(directory: Path, common_name: str = "podinfra registry CA") -> tuple[Path, Path]:
    """``directory/ca.crt`` and ``ca.key``: reused when both exist, made when neither does."""
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    with _locked(directory):
        if cert_path.exists() and key_path.exists():
            cert, key = _load_cert(cert_path), _load_key(key_path)
            if not _same_public_key(cert, key):
                raise PkiError(f"{key_path} is not the key of {cert_path}: restore the pair or remove both")
            return cert_path, key_path
        if cert_path.exists() or key_path.exists():
            # Never replace half a CA: nodes may already trust the certificate that is left.
            present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
            raise PkiError(f"{present} exists but {missing} does not: restore it, or remove both to make a new CA")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def ensure_server_cert(
    directory: Path, ca: tuple[Path, Path], hostnames: Sequence[str], ips: Sequence[str]
) -> tuple[Path, Path]:
    """``directory/server.crt`` and ``server.key`` for exactly these names and addresses, signed by
    ``ca`` (cert, key). Reissued when the CA, the names or addresses differ, or it expires within
    30 days."""
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    if not hostnames and not ips:
        raise ValueError("a server certificate needs at least one hostname or IP address")
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dict.fromkeys(hostnames)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
    ca_cert, ca_key = _load_cert(ca[0]), _load_key(ca[1])
    with _locked(directory):
        if _server_cert_fits(cert_path, key_path, ca_cert, sans):
            return cert_path, key_path
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0] if hostnames else ips[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            # A leaf outliving its CA fails verification anyway; stop where the CA stops.
            .not_valid_after(min(now + timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def check_cert_and_key(cert_path: Path, key_path: Path) -> None:
    """Raise PkiError unless ``key_path`` is the key of the (first) certificate in ``cert_path``."""
    if not _same_public_key(_load_cert(cert_path), _load_key(key_path)):
        raise PkiError(f"{key_path} is not the key of the certificate in {cert_path}")


def check_certificate(path: Path) -> None:
    """Raise PkiError unless ``path`` holds a PEM certificate (e.g. a CA file from the inventory)."""
    _load_cert(path)


def ensure_passwords(path: Path, users: Iterable[str]) -> dict[str, str]:
    """A random password per user, kept in ``path`` (JSON, 0600) so that later runs reuse it."""
    with _locked(path.parent):
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        wanted = {user: stored.get(user) or secrets.token_urlsafe(18) for user in users}
        if wanted.items() - stored.items():
            _write(path, (json.dumps({**stored, **wanted}, indent=2, sort_keys=True) + "\n").encode(), 0o600)
    return wanted


def check_htpasswd_users(users: Mapping[str, str]) -> None:
    """Raise PkiError unless every user can go into an htpasswd file that bcrypt can check."""
    if not users:
        raise PkiError("no users: give at least one user and password")
    for user, password in users.items():
        if not user or ":" in user or any(c.isspace() for c in user):
            raise PkiError(f"user {user!r}: use a non-empty name without ':' or spaces")
        if not password or len(password.encode()) > 72:
            # bcrypt only reads 72 bytes; bcrypt>=5 refuses longer input instead of truncating it.
            raise PkiError(f"user {user!r}: the password must be 1 to 72 bytes long")


def ensure_htpasswd(path: Path, users: Mapping[str, str], push_user: str) -> Path:
    """An htpasswd file for exactly ``users``; left alone while it still verifies them (and their schemes).

    `push_user`'s entry is bcrypt. Every other user may only read, and its password sits in cleartext in
    every node's hosts.toml anyway, so a stolen htpasswd gives nothing a node does not: its entry is a
    salted SHA-1 ({SSHA}), which nginx checks in microseconds instead of bcrypt's ~70 ms on every request
    a fleet's pulls make (docs/fleet.md). Hashes are salted, so rewriting on each run would change the file."""
    check_htpasswd_users(users)
    with _locked(path.parent):
        if path.exists() and _htpasswd_verifies(path.read_text(), users, push_user):
            return path
        lines = [f"{user}:{_hash(password, user == push_user)}\n" for user, password in sorted(users.items())]
        _write(path, "".join(lines).encode(), 0o600)
    return path


def _hash(password: str, slow: bool) -> str:
    if slow:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
    salt = secrets.token_bytes(8)
    return SSHA + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def _matches(password: str, hashed: str, slow: bool) -> bool:
    """Whether `hashed` is `password` in the scheme its user gets."""
    if slow:
        try:
            return bcrypt.checkpw(password.encode(), hashed.encode())
        except ValueError:  # not a bcrypt hash
            return False
    if not hashed.startswith(SSHA):
        return False
    try:
        raw = base64.b64decode(hashed.removeprefix(SSHA), validate=True)
    except ValueError:
        return False
    digest, salt = raw[:20], raw[20:]
    return hmac.compare_digest(hashlib.sha1(password.encode() + salt).digest(), digest)


def _htpasswd_verifies(text: str, users: Mapping[str, str], push_user: str) -> bool:
    hashes_by_user = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if hashes_by_user.keys() != users.keys():
        return False
    return all(_matches(users[user], hashed, user == push_user) for user, hashed in hashes_by_user.items())


def _server_cert_fits(cert_path: Path, key_path: Path, ca_cert: x509.Certificate, sans: list[x509.GeneralName]) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert, key = _load_cert(cert_path), _load_key(key_path)
    try:
        cert.verify_directly_issued_by(ca_cert)
        present = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    return (
        present == set(sans)
        and _same_public_key(cert, key)
        and cert.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as e:
        raise PkiError(f"{path}: not a PEM certificate ({e})") from e


def _load_key(path: Path) -> IssuerKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise PkiError(f"{path}: not an unencrypted PEM private key ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: use an EC or RSA key")
    return key


def _same_public_key(cert: x509.Certificate, key: IssuerKey) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def _key_pem(key: IssuerKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock``: two runs making the same CA at once must not mix their halves."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# A pyinfra run plans before it executes, and `--dry` only plans; deploy code cannot tell which run it is in.
# So the PKI is made in a scratch copy of the operator's directory while the run is planned (its files are
# what the registry gets uploaded, its CA what the nodes trust) and written into the directory by an
# operation (``local_registry``'s first) when the run executes: a --dry run writes nothing there.
_scratch: dict[Path, Path] = {}


def scratch(directory: Path) -> Path:
    """This process's scratch copy of `directory` (empty when it does not exist yet), removed at exit."""
    if directory not in _scratch:
        top = Path(tempfile.mkdtemp(prefix="podinfra-pki-"))
        atexit.register(shutil.rmtree, top, True)
        copy = top / "pki"
        if directory.is_dir():
            shutil.copytree(directory, copy, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
        _scratch[directory] = copy
    return _scratch[directory]


def pending(directory: Path) -> list[Path]:
    """The files of `directory`'s scratch copy that it does not hold as they are: what the run will write."""
    copy = _scratch.get(directory)
    if copy is None:
        return []
    changed = []
    for made in sorted(copy.rglob("*")):
        kept = directory / made.relative_to(copy)
        if made.is_file() and made.name != ".lock" and not (kept.is_file() and kept.read_bytes() == made.read_bytes()):
            changed.append(kept)
    return changed


def commit(directory: Path, paths: Iterable[Path]) -> None:
    """Write `paths` of `directory` from its scratch copy, each atomically with its scratch file's mode.

    A file that another run wrote meanwhile with other bytes is left alone: PkiError, nothing replaced."""
    copy = _scratch[directory]
    with _locked(directory):
        for path in paths:
            made = copy / path.relative_to(directory)
            if path.is_file() and path.read_bytes() != made.read_bytes() and path.name in ("ca.crt", "ca.key"):
                raise PkiError(f"{path} was made by another run meanwhile: run again to use it")
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write(path, made.read_bytes(), made.stat().st_mode & 0o777)


def planned(path: Path) -> Path:
    """`path`, or, while a run that will make it is planned, the scratch file standing for it."""
    if path.exists():
        return path
    for directory, copy in _scratch.items():
        if path.is_relative_to(directory) and (copy / path.relative_to(directory)).exists():
            return copy / path.relative_to(directory)
    return path
