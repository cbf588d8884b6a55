"""registries.conf and its drop-ins: which table decides a pull, and taking another file's table out of the way."""

from __future__ import annotations

import pytest

from podinfra.errors import ConfigError
from podinfra.node import registries

LOCAL = "10.0.0.2:5000"
OURS = f'[[registry]]\nprefix = "registry.k8s.io"\nlocation = "{LOCAL}"\n'
OWN = "/d/90-podinfra.conf"
PAUSE = "registry.k8s.io/pause:3.10"


def table(prefix: str, location: str, *mirrors: str) -> str:
    text = f'[[registry]]\nprefix = "{prefix}"\nlocation = "{location}"\n'
    return text + "".join(f'[[registry.mirror]]\nlocation = "{m}"\n' for m in mirrors)


def prefixes(found: dict[str, tuple[list[str], str]]) -> dict[str, list[str]]:
    return {path: names for path, (names, _) in found.items()}


def test_only_tables_that_decide_and_send_pulls_elsewhere_are_named():
    files = [
        ("/main", table("registry.k8s.io", "registry.k8s.io")),  # replaced by ours: read earlier
        ("/d/10-longer.conf", table("registry.k8s.io/pause", "quay.io/pause")),  # longest prefix wins
        (OWN, OURS),
        ("/d/95-same.conf", table("registry.k8s.io", LOCAL)),  # decides, but to the local registry only
        ("/d/99-other.conf", table("docker.io", "docker.io")),  # another registry: not podinfra's
    ]
    assert prefixes(registries.overriding(files, [PAUSE], LOCAL, OWN)) == {
        "/d/10-longer.conf": ["registry.k8s.io/pause"]
    }


def test_a_later_fallback_is_named_and_once_commented_out_nothing_is():
    fallback = table("registry.k8s.io", "registry.k8s.io", LOCAL) + '[aliases]\n"pause" = "registry.k8s.io/pause"\n'
    files = [("/main", ""), (OWN, OURS), ("/d/99-fallback.conf", fallback)]
    found = registries.overriding(files, [PAUSE], LOCAL, OWN)
    assert prefixes(found) == {"/d/99-fallback.conf": ["registry.k8s.io"]}
    edited = registries.without_tables(fallback, ["registry.k8s.io"], OWN)
    assert found["/d/99-fallback.conf"][1] == edited
    assert edited.endswith('[aliases]\n"pause" = "registry.k8s.io/pause"\n')  # the next table is kept
    after = [("/main", ""), (OWN, OURS), ("/d/99-fallback.conf", edited)]
    assert registries.overriding(after, [PAUSE], LOCAL, OWN) == {}
    assert registries.merge(after).aliases == {"pause": ("registry.k8s.io/pause", "/d/99-fallback.conf")}
    assert registries.without_tables(edited, ["registry.k8s.io"], OWN) == edited  # a second run changes nothing


def test_two_tables_in_turn_are_both_named():
    files = [
        ("/main", table("registry.k8s.io/pause", "quay.io/pause")),
        (OWN, OURS),
        ("/d/99.conf", table("registry.k8s.io", "registry.k8s.io")),
    ]
    assert prefixes(registries.overriding(files, [PAUSE], LOCAL, OWN)) == {
        "/main": ["registry.k8s.io/pause"],
        "/d/99.conf": ["registry.k8s.io"],
    }


def test_a_table_that_cannot_be_commented_out_is_refused_by_name():
    inline = 'registry = [{prefix = "registry.k8s.io", location = "registry.k8s.io"}]\n'
    with pytest.raises(ConfigError, match=r"^/d/99\.conf: its \[\[registry\]\] of prefix 'registry.k8s.io' sends"):
        registries.overriding([("/main", ""), (OWN, OURS), ("/d/99.conf", inline)], [PAUSE], LOCAL, OWN)


def test_podinfras_dropin_takes_its_place_in_read_order():
    files = [("/main", ""), ("/d/99.conf", "x"), ("/d/10.conf", "y")]
    assert [p for p, _ in registries.with_file(files, OWN, OURS)] == ["/main", "/d/10.conf", OWN, "/d/99.conf"]
    assert registries.with_file([("/main", ""), (OWN, "old")], OWN, OURS) == [("/main", ""), (OWN, OURS)]
    # no registries.conf: the drop-ins alone, still by name
    assert [p for p, _ in registries.with_file([("/d/zz.conf", "")], OWN, OURS)] == [OWN, "/d/zz.conf"]
