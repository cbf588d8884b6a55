"""A number of nodes given as a count or as a share of the fleet ("10%"), as Kubespray's ``serial`` takes it."""

from __future__ import annotations

import math
import re
from fractions import Fraction

SHARE = re.compile(r"(\d+(?:\.\d+)?)%")


def of_fleet(value: int | str, fleet: int, least: int) -> int:
    """`value` nodes of a fleet of `fleet`: a count as it is; a share ("10%") as Kubespray's ``serial`` counts
    it, rounded down and at least `least`.

    >>> of_fleet("10%", 150, 1), of_fleet("10%", 5, 1), of_fleet("29%", 100, 0), of_fleet(3, 150, 1)
    (15, 1, 29, 3)
    """
    found = SHARE.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        return int(value)
    return max(least, math.floor(Fraction(found[1]) * fleet / 100))
