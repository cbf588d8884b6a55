"""The checks behind every inventory data key's type (podinfra.data.models): each value checked, and when
it is wrong, the fix named; the field types the models are made of."""

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo

from podinfra import versions
from podinfra.data import pki
from podinfra.data.shares import SHARE
from podinfra.images.reference import ReferenceError, parse, split_registry


def _v(check: Callable[[Any], Any], fix: str) -> BeforeValidator:
    """A validator: `check(value)` is True (keep it), False (wrong: say `fix`), or the value to keep."""

    def validate(value: Any) -> Any:
        try:
            result = check(value)
        except (ValueError, TypeError, ReferenceError, pki.PkiError) as error:
            detail = str(error)
            raise ValueError(f"{fix} ({detail})" if detail and fix not in detail else fix) from None
        if result is False:
            raise ValueError(fix)
        return value if result is True else result

    return BeforeValidator(validate)


def _is(*types: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def _version(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise TypeError(
            f'{value!r} is a number: quote it, as "1.31" in the inventory or --data \'KEY="1.31"\' on the command line'
        )
    if not isinstance(value, str):
        raise TypeError('a string such as "1.31"')
    versions.minor(value)
    return value


def _pause_tag(value: Any, info: ValidationInfo) -> str | None:
    """pause_tag as given (an OCI tag); when unset, the node's minor must be in the catalogue."""
    if value is not None:
        return versions.check_tag(value) if isinstance(value, str) else _not_a_tag(value)
    kubernetes = info.data.get("kubernetes_version")
    if kubernetes is not None:
        versions.pause_tag(kubernetes)  # VersionError: the minor is unknown, and it names pause_tag
    return None


def _not_a_tag(value: Any) -> str:
    # --data pause_tag=3.10 arrives as the float 3.1: a tag that reads as a number must be quoted
    raise TypeError(f'{value!r} is not a string: quote it, as "3.10" in the inventory or --data \'pause_tag="3.10"\'')


def _registry_host(value: Any) -> str:
    host, prefix = split_registry(value)
    if prefix:
        raise ValueError("a repository prefix goes in registry_prefix")
    return host


def _prefix(value: Any) -> str:
    split_registry(f"x/{value}" if value.strip("/") else "x")
    return str(value).strip("/")


def _control_file(value: Any) -> Path:
    # pki.planned: podinfra's CA that this run makes is read from the run's scratch PKI until it is written
    if not isinstance(value, str) or not pki.planned(Path(value)).is_file():
        raise ValueError("")
    return pki.planned(Path(value))


def _ca(value: Any) -> Path | Literal["system"]:
    if value == "system":
        return "system"
    path = _control_file(value)
    pki.check_certificate(path)
    return path


def _node_path(value: Any) -> str:
    text = str(value)
    if not isinstance(value, str) or not PurePosixPath(text).is_absolute() or any(c in text for c in "\n\r\0"):
        raise ValueError("")
    return text


def _socket(value: Any) -> str:
    """A CRI endpoint as its socket path: ``unix:///run/x.sock`` or ``/run/x.sock`` -> ``/run/x.sock``."""
    if not isinstance(value, str) or ("://" in value and not value.startswith("unix://")):
        raise ValueError("")
    return _node_path(value.removeprefix("unix://"))


def _count(least: int) -> Callable[[Any], bool]:
    return lambda value: _is(int)(value) and value >= least


def count_or_share(least: int) -> Callable[[Any], bool]:
    """A whole number of nodes (at least `least`), or a share of the fleet from 0% (`least` 0) or above 0% to 100%."""
    count = _count(least)

    def valid(value: Any) -> bool:
        found = SHARE.fullmatch(value) if isinstance(value, str) else None
        if found:
            share = Fraction(found[1])
            return (share >= 0 if least == 0 else share > 0) and share <= 100
        return count(value)

    return valid


def _image(value: Any) -> str:
    parse(value)
    return str(value)


def _images(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TypeError("")
    return [_image(item) for item in value]


def _registries(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise TypeError("")
    return [_registry_host(item) for item in value]


def _host_port(value: Any) -> str:
    host, path = split_registry(value)
    if path or ":" not in host:
        raise ValueError("")
    return host


def _users(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in [*value, *value.values()]):
        raise TypeError("")
    pki.check_htpasswd_users(value)
    return value


def _secret_field(default: Any, description: str) -> Any:
    return Field(default, description=description, json_schema_extra={"secret": True})


PATH_FIX = "use an absolute path on the node"
VersionText = Annotated[str, _v(_version, 'set it to the cluster\'s version, e.g. "1.31"')]
RegistryHost = Annotated[str, _v(_registry_host, "give the registry as HOST[:PORT]")]
Prefix = Annotated[str, _v(_prefix, "use lowercase path components such as mirror/k8s")]
NodePath = Annotated[str, _v(_node_path, PATH_FIX)]
ControlFile = Annotated[Path, _v(_control_file, "give the path of an existing file on the control host")]
Flag = Annotated[bool, _v(_is(bool), "use true or false")]
Name = Annotated[str, _v(lambda v: _is(str)(v) and bool(v), "use a non-empty string")]
