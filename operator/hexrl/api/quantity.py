"""Kubernetes resource quantities (`250m`, `2`, `512Mi`, `1.5Gi`): the pattern the CRD enforces and a parser.

The RLJob's `spec.resources` takes CPU and memory as quantity strings, as a Pod does. The pattern admits the
decimal forms people write (plain numbers, a decimal SI suffix m/k/M/G/T/P/E or a binary suffix
Ki/Mi/Gi/Ti/Pi/Ei) and rejects the rest with the API server's schema check; `parse_quantity` turns a
quantity into an exact `Decimal` (cores or bytes) so that limits can be compared with requests. Pure.
"""

from __future__ import annotations

import re
from decimal import Decimal

QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
"""A non-negative decimal number with an optional SI or binary suffix (a subset of Kubernetes' syntax:
no exponents, no sign)."""
QUANTITY_MAX_LENGTH = 32

_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}  # fmt: skip
_RE = re.compile(QUANTITY_PATTERN)


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity (cores for CPU, bytes for memory); ValueError naming it when malformed."""
    m = _RE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 250m, 2, 512Mi, 4Gi)")
    return Decimal(m.group(1)) * _SUFFIX[m.group(3) or ""]


def scale_quantity(text: str, factor: int) -> str:
    """`text` × `factor`, in the same suffix (`250m` × 4 = `1000m`, `2Gi` × 4 = `8Gi`); exact, no rounding."""
    m = _RE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 250m, 2, 512Mi, 4Gi)")
    number = format(Decimal(m.group(1)) * factor, "f")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number + (m.group(3) or "")
