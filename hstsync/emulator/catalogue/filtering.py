"""How the portal's filters select observation rows: ``Mast.Caom.Filtered`` and its
``.Position`` cone search, over the columns of :mod:`hstsync.emulator.columns`.

A discrete value matches as a string, case aside: ``proposal_id="1345"`` does not find
a row whose ``proposal_id`` is ``"01345"``. With ``numeric_ids`` a ``proposal_id``
made of digits matches by its number instead (``"1345"``, ``"01345"`` and ``1345``
alike): ``docs/emulator.md`` says why both are kept."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hstsync.emulator.catalogue.records import Row
from hstsync.emulator.columns import CONTINUOUS


def select(
    rows: list[Row],
    filters: Sequence[Mapping[str, Any]],
    position: tuple[float, float, float] | None,
    *,
    numeric_ids: bool = False,
) -> list[Row]:
    """The rows that pass every filter (and lie within ``position``'s cone, their
    ``distance`` added), in their order."""
    selected = []
    for row in rows:
        if position is not None:
            distance = distance_arcsec(row, position)
            if distance is None or distance > position[2] * 3600:
                continue
            row["distance"] = distance
        if all(matches(row, f, numeric_ids=numeric_ids) for f in filters):
            selected.append(row)
    return selected


def _number(text: str) -> str:
    """A string of digits without its leading zeros (``"01345"`` -> ``"1345"``)."""
    text = text.strip()
    return (text.lstrip("0") or "0") if text.isdigit() else text


def matches(row: Row, flt: Mapping[str, Any], *, numeric_ids: bool = False) -> bool:
    name = str(flt.get("paramName", ""))
    column = next((c for c in row if c.lower() == name.lower()), None)
    if column is None:
        return False
    value = row[column]
    values = flt.get("values") or []
    if column in CONTINUOUS:
        if value is None:
            return False
        ranges = [v for v in values if isinstance(v, Mapping)]
        return any(_in_range(float(value), r) for r in ranges) if ranges else True
    if value is None:
        return False
    separator = flt.get("separator")
    parts = str(value).split(separator) if separator else [str(value)]
    wanted = {str(v).lower() for v in values}
    if numeric_ids and column == "proposal_id":
        parts = [_number(p) for p in parts]
        wanted = {_number(v) for v in wanted}
    free = flt.get("freeText")
    pattern = _free_text(str(free)) if free else None
    return any(
        p.strip().lower() in wanted or (pattern is not None and pattern.fullmatch(p.strip()))
        for p in parts
    )


def _in_range(value: float, bounds: Mapping[str, Any]) -> bool:
    low, high = bounds.get("min"), bounds.get("max")
    return (low is None or value >= float(low)) and (high is None or value <= float(high))


def _free_text(text: str) -> re.Pattern[str]:
    # MAST's free text uses SQL's % wildcard; fnmatch's * is the same idea.
    return re.compile(fnmatch.translate(text.replace("%", "*")), re.IGNORECASE)


def distance_arcsec(row: Row, position: tuple[float, float, float]) -> float | None:
    ra, dec = row.get("s_ra"), row.get("s_dec")
    if ra is None or dec is None:
        return None
    ra1, dec1, ra2, dec2 = map(math.radians, (float(ra), float(dec), position[0], position[1]))
    cos = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos)))) * 3600
