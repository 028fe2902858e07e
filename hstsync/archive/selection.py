"""Why a request selects nothing: what it asked for, against what the archive holds.

A request whose ``[filters]`` keep none of its products, or whose ``[criteria]`` match
none of its proposal's observations, is not mirrored: it must say why in words a person
can act on. ``filter_products`` is exact and case-sensitive (astroquery 0.4.11), so
``productType = ["science"]`` or ``calib_level = [7]`` quietly keeps nothing; the
reason names the value asked for, the values there are, and a close one where there is
one (``SCIENCE``; ``STIS/CCD`` and the wildcard ``STIS*`` for ``instrument_name =
["STIS"]``, a wildcard the portal takes in criteria).

:class:`Sieve` follows a request's product lists batch by batch (a program is never
held whole) and, while nothing has been kept, gathers the values of the filtered
columns; :func:`why_no_observation` words the criteria case from one table of the
proposal's observations. The tables are astropy's, read here and nowhere further.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hstsync.archive.cells import missing

#: values of one column kept to say what there is; the message shows fewer
KEPT_VALUES = 50
#: values of one column a message names, and values asked for that it repeats
SHOWN_VALUES = 12
SHOWN_ASKED = 5

#: the product column a ``filter_products`` option looks at
_OPTION_COLUMNS = {"extension": "productFilename", "mrp_only": "productGroupDescription"}


class Sieve:
    """What a request's ``[filters]`` let through, batch by batch, and why nothing did.

    ``filter`` is ``Observations.filter_products`` (bound), asked again one filter at a
    time only for a batch that kept nothing while nothing has been kept before: the
    cost of explaining falls on requests that select nothing.
    """

    def __init__(self, filters: Mapping[str, Any], collection: str = "HST") -> None:
        self.filters = {k: v for k, v in filters.items() if not (k == "mrp_only" and not v)}
        self.collection = collection
        #: observations the request's criteria match, and of them those planned, not
        #: yet executed (calib_level -1: no files yet)
        self.observations = 0
        self.planned = 0
        #: product rows the archive listed for the request's observations
        self.listed = 0
        #: rows the filters kept
        self.kept = 0
        self._present: dict[str, set[str]] = {key: set() for key in self.filters}
        self._alone: dict[str, int] = dict.fromkeys(self.filters, 0)

    def observed(self, rows: int, planned: int) -> None:
        """A page of the request's observations: ``rows``, of which ``planned`` are
        planned, not yet executed."""
        self.observations += rows
        self.planned += planned

    def saw(self, table: Any, kept: int, filter: Callable[..., Any]) -> None:
        """One batch's product table, of which the filters kept ``kept`` rows."""
        self.listed += len(table)
        self.kept += kept
        if self.kept or not len(table) or not self.filters:
            return
        for key, value in self.filters.items():
            self._alone[key] += len(filter(table, **{key: value}))
            values = self._present[key]
            if len(values) < KEPT_VALUES:
                values |= set(column_values(table, key, KEPT_VALUES - len(values)))

    def why_none(self, proposals: Sequence[str]) -> str | None:
        """Why nothing was selected, once every batch is in; None when something was."""
        if self.kept:
            return None
        ids = ", ".join(proposals)
        if not self.listed and self.planned and self.planned == self.observations:
            return (
                f"the {self.planned} {self.collection} observation(s) of proposal {ids} are "
                "planned, not yet executed: their files are fetched at a re-sync once the "
                "archive lists them"
            )
        if not self.listed:
            return f"the archive lists no products for the observations of proposal {ids}"
        prefix = f"the filters left none of the {self.listed} products of proposal {ids}: "
        culprits = [key for key in self.filters if not self._alone[key]]
        if culprits:
            return prefix + "; ".join(
                f"{_asked(key, self.filters[key])} matches none"
                f"{_aside(_there(key, self._present[key], self.filters[key], wildcards=False))}"
                for key in culprits
            )
        together = " and ".join(_asked(key, value) for key, value in self.filters.items())
        there = _aside(
            *(
                _there(key, values, self.filters[key], wildcards=False)
                for key, values in self._present.items()
            )
        )
        return f"{prefix}no product has {together} at once{there}"


def why_no_observation(
    proposals: Sequence[str],
    criteria: Mapping[str, Any],
    observations: Any,
    *,
    whole: bool,
    collection: str = "HST",
) -> str:
    """Why the ``criteria`` match none of the proposal's ``observations`` (a table of
    them, the criteria left out; ``whole``: all of them, not a first page), naming the
    values its columns hold."""
    ids = ", ".join(proposals)
    found = f"proposal {ids} has {len(observations)}{'' if whole else ' or more'}"
    lines = []
    for key, value in criteria.items():
        column = next((c for c in observations.colnames if c.lower() == key.lower()), None)
        if column is None:
            continue
        present = column_values(observations, column, KEPT_VALUES)
        if any(_matches(asked, present) for asked in _values(value)):
            continue  # this one alone matches some: not the one to blame
        lines.append(f"{_asked(key, value)}{_aside(_there(key, present, value, wildcards=True))}")
    if not lines:
        lines = [_asked(key, value) for key, value in criteria.items()]
        return f"{found} {collection} observations, none with {' and '.join(lines)} at once"
    return f"{found} {collection} observations, none with " + "; none with ".join(lines)


def column_values(table: Any, key: str, limit: int) -> list[str]:
    """Up to ``limit`` distinct values of the column ``key`` filters (for ``extension``,
    the files' extensions), as text; nulls left out."""
    name = _OPTION_COLUMNS.get(key, key)
    if name not in table.colnames:
        return []
    found: dict[str, None] = {}
    for cell in table[name]:
        if missing(cell):
            continue
        text = str(cell)
        if key == "extension":
            text = text.partition(".")[2]
            if not text:
                continue
        found.setdefault(text)
        if len(found) >= limit:
            break
    return list(found)


def _values(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return [json.dumps(v) if isinstance(v, bool) else str(v) for v in items]


def _asked(key: str, value: Any) -> str:
    """``key = value`` as the manifest wrote it (TOML and JSON agree on these)."""
    items = value if isinstance(value, list | tuple) else [value]
    if len(items) > SHOWN_ASKED:
        shown = ", ".join(json.dumps(v) for v in items[:SHOWN_ASKED])
        return f"{key} = [{shown}, … {len(items) - SHOWN_ASKED} more]"
    return f"{key} = {json.dumps(value)}"


def _aside(*notes: str) -> str:
    """`` (NOTE; NOTE)`` of the notes that say something, or ``""``."""
    said = [note for note in notes if note]
    return f" ({'; '.join(said)})" if said else ""


def _there(key: str, present: Iterable[str], asked: Any, *, wildcards: bool) -> str:
    """``productType here: AUXILIARY, SCIENCE; did you mean "SCIENCE"?``, or ``""``
    when the column holds nothing to name."""
    values = sorted(present, key=_order)
    if key == "mrp_only" or not values:
        return ""
    shown = ", ".join(values[:SHOWN_VALUES])
    if len(values) > SHOWN_VALUES:
        shown += f", … {len(values) - SHOWN_VALUES} more"
    what = "extensions" if key == "extension" else key
    hints = []
    for wanted in _values(asked):
        if wanted.startswith("!") or ".." in wanted or any(c in wanted for c in "*%<>="):
            continue  # negations, ranges, comparisons and wildcards are not names
        close = _close(wanted, values)
        if close is not None and close != wanted:
            hints.append(json.dumps(close))
        if wildcards and any(v.lower().startswith(wanted.lower()) for v in values):
            hints.append(json.dumps(wanted + "*"))
    hint = f"; did you mean {' or '.join(dict.fromkeys(hints))}?" if hints else ""
    return f"{what} here: {shown}{hint}"


def _close(wanted: str, values: Sequence[str]) -> str | None:
    """The value a person most likely meant: the same but for case, one it begins, or
    the closest spelling."""
    lowered = {v.lower(): v for v in values}
    if wanted.lower() in lowered:
        return lowered[wanted.lower()]
    starting = [v for v in values if v.lower().startswith(wanted.lower())]
    if starting:
        return starting[0]
    close = difflib.get_close_matches(wanted.lower(), list(lowered), n=1)
    return lowered[close[0]] if close else None


def _matches(asked: str, present: Iterable[str]) -> bool:
    """Whether the portal would take ``asked`` for one of ``present``: the same but for
    case, or a wildcard (``*``, ``%``) that fits one."""
    pattern = asked.replace("%", "*").lower()
    return any(fnmatch.fnmatchcase(value.lower(), pattern) for value in present)


def _order(text: str) -> tuple[int, float, str]:
    """Numbers in numeric order, before text in text order."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)
