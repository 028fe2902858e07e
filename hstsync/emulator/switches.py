"""The emulator's switch values: the text after ``--program``, ``--fault`` and the like.

Owns turning one command-line string into what it names, and refusing a string that
names nothing with a message that says what was expected (an
:class:`argparse.ArgumentTypeError`, so ``argparse`` prints it beside the switch):
``PROPOSAL:FILES:SIZE[:exclusive]`` (:func:`parse_program`),
``PROPOSAL:OBSERVATIONS[:SIZE][:exclusive]`` (:func:`parse_jwst_program`),
``MATCH:QUIRK[,QUIRK...]`` (:func:`parse_product_quirk`),
``KIND[:MATCH[:AFTER]][:key=value...]`` (:func:`parse_fault`), ``N[:error|:hang]``
(:func:`obsid_limit`), ``TYPE[,TYPE...]`` (:func:`size_types`) and ``TOKEN=USER``
(:func:`token_user`). Each is a pure function of its string, tested without a parser;
:mod:`hstsync.emulator.cli` names the switches and builds the emulator from what
these return.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from hstsync.emulator.catalogue import EXCLUSIVE_ACCESS, PUBLIC, Catalogue
from hstsync.emulator.faults import Fault, FaultKind
from hstsync.emulator.quirks import SIZE_TYPES, BodyStyle


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    proposal_id: str
    files: int
    size: int
    data_rights: str = PUBLIC


def parse_program(text: str) -> ProgramSpec:
    """``PROPOSAL:FILES:SIZE[:exclusive]`` -> a synthetic program of FILES files of SIZE bytes."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected PROPOSAL:FILES:SIZE[:exclusive], got {text!r}")
    try:
        files, size = int(parts[1]), int(float(parts[2]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"FILES and SIZE must be numbers in {text!r}") from None
    if files < 0 or size < 0:
        raise argparse.ArgumentTypeError(f"FILES and SIZE must not be negative in {text!r}")
    rights = PUBLIC
    if len(parts) == 4:
        if parts[3].lower() not in ("exclusive", "exclusive_access", "public"):
            raise argparse.ArgumentTypeError(f"the 4th field must be 'exclusive' in {text!r}")
        rights = PUBLIC if parts[3].lower() == "public" else EXCLUSIVE_ACCESS
    return ProgramSpec(parts[0], files, size, rights)


@dataclass(frozen=True, slots=True)
class JwstProgramSpec:
    proposal_id: str
    observations: int
    size: int = 5760
    data_rights: str = PUBLIC


def parse_jwst_program(text: str) -> JwstProgramSpec:
    """``PROPOSAL:OBSERVATIONS[:SIZE][:exclusive]`` -> a synthetic JWST program of
    OBSERVATIONS exposure-level observations (files of SIZE bytes, 5760 by default)."""
    parts = text.split(":")
    rights = PUBLIC
    if len(parts) >= 3 and parts[-1].lower() in ("exclusive", "exclusive_access", "public"):
        rights = PUBLIC if parts.pop().lower() == "public" else EXCLUSIVE_ACCESS
    if len(parts) not in (2, 3) or not parts[0].isdigit() or len(parts[0]) > 5:
        raise argparse.ArgumentTypeError(
            f"expected PROPOSAL:OBSERVATIONS[:SIZE][:exclusive] (PROPOSAL up to five digits), "
            f"got {text!r}"
        )
    try:
        observations = int(parts[1])
        size = int(float(parts[2])) if len(parts) == 3 else 5760
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"OBSERVATIONS and SIZE must be numbers in {text!r}"
        ) from None
    if observations < 0 or size < 0:
        raise argparse.ArgumentTypeError(f"OBSERVATIONS and SIZE must not be negative in {text!r}")
    return JwstProgramSpec(f"{int(parts[0]):05d}", observations, size, rights)


def obsid_limit(text: str) -> tuple[int, str]:
    """``N[:error|:hang]`` -> (N, how a lookup naming more than N obsids fails)."""
    number, _, how = text.partition(":")
    try:
        limit = int(number)
    except ValueError:
        limit = 0
    if limit < 1 or how not in ("", "error", "hang"):
        raise argparse.ArgumentTypeError(f"expected N[:error|:hang] with N >= 1, got {text!r}")
    return limit, how or "error"


@dataclass(frozen=True, slots=True)
class ProductQuirkSpec:
    """``--product-quirk``: the quirks to give every product whose name matches."""

    match: str
    options: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, Any] = field(default_factory=dict)

    def apply(self, catalogue: Catalogue) -> int:
        return len(catalogue.set_product_quirks(self.match, cells=self.cells, **self.options))


_FLAGS = {
    "chunked": ("chunked", True),
    "no-ranges": ("ranges", False),
    "redirect": ("redirect", True),
    "no-cloud": ("cloud", False),
    "no-validators": ("validators", False),
}


def parse_product_quirk(text: str) -> ProductQuirkSpec:
    """``MATCH:QUIRK[,QUIRK...]``, e.g. ``*_flt.fits:chunked,no-ranges`` or
    ``*_raw.fits:null=size,null=dataRights`` or ``*_drz.fits:size=1234.0,style=jpeg``.

    ``size=`` sets the listed size: ``1234`` an int, ``1234.0`` a float, ``'1234'`` a
    string (quoted). ``style=`` is one of the body styles (fits, fits_no_checksum,
    fits_odd_header, jpeg, text).
    """
    match, sep, rest = text.rpartition(":")
    if not sep or not match or not rest:
        raise argparse.ArgumentTypeError(f"expected MATCH:QUIRK[,QUIRK...], got {text!r}")
    options: dict[str, Any] = {}
    cells: dict[str, Any] = {}
    for quirk in rest.split(","):
        name, eq, value = quirk.strip().partition("=")
        if not eq and name in _FLAGS:
            key, flag = _FLAGS[name]
            options[key] = flag
        elif name == "style" and value in {s.value for s in BodyStyle}:
            options["style"] = BodyStyle(value)
        elif name == "null" and value:
            cells[value] = None
        elif name == "size" and value:
            cells["size"] = _listed_size(value, text)
        else:
            flags = ", ".join([*_FLAGS, "style=STYLE", "null=COLUMN", "size=VALUE"])
            raise argparse.ArgumentTypeError(
                f"unknown product quirk {quirk!r} in {text!r} (one of {flags})"
            )
    return ProductQuirkSpec(match, options, cells)


def _listed_size(value: str, text: str) -> int | float | str:
    try:
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            return str(int(value[1:-1]))
        return float(value) if "." in value else int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be a number in {text!r}") from None


def size_types(text: str) -> tuple[str, ...]:
    """``TYPE[,TYPE...]`` -> how the size column is declared, page by page."""
    types = tuple(t.strip().lower() for t in text.split(","))
    if not types or any(t not in SIZE_TYPES for t in types):
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(SIZE_TYPES)} (comma-separated, cycled per page), got {text!r}"
        )
    return types


def parse_fault(text: str) -> Fault:
    """``KIND[:MATCH[:AFTER]][:key=value...]``, e.g. ``reset:*x2d*:5000000`` or
    ``status:*:status=503:retry_after=2:times=forever``.

    Keys: times (a number or ``forever``), skip (matching requests let through
    first), after, status, retry_after, delay, message, endpoint (download, invoke,
    cloud = the public bucket, any). ``hang:Mast.Caom.Products`` makes the first
    product lookup never answer.
    """
    kind_text, *rest = text.split(":")
    try:
        kind = FaultKind(kind_text.strip().lower().replace("-", "_"))
    except ValueError:
        names = ", ".join(k.value for k in FaultKind)
        raise argparse.ArgumentTypeError(
            f"unknown fault kind {kind_text!r} (one of {names})"
        ) from None
    positional = [p for p in rest if "=" not in p]
    options = dict(p.split("=", 1) for p in rest if "=" in p)
    if len(positional) > 2:
        raise argparse.ArgumentTypeError(f"too many fields in fault {text!r}")
    try:
        fault = Fault(
            kind,
            match=positional[0] if positional else "*",
            after=int(float(options.pop("after", positional[1] if len(positional) > 1 else 0))),
            times=_times(options.pop("times", "1")),
            status=int(options.pop("status", 503)),
            retry_after=float(options["retry_after"]) if "retry_after" in options else None,
            delay=float(options.pop("delay", 0.0)),
            message=options.pop("message", "Emulated MAST service error"),
            endpoint=options.pop("endpoint", None),
            skip=int(options.pop("skip", 0)),
        )
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad fault {text!r}: {exc}") from None
    options.pop("retry_after", None)
    if options:
        raise argparse.ArgumentTypeError(
            f"unknown fault option(s) {', '.join(options)} in {text!r}"
        )
    return fault


def _times(text: str) -> int | None:
    return None if text.lower() in ("forever", "inf", "none") else int(text)


def token_user(text: str) -> tuple[str, str]:
    """``TOKEN=USER`` -> (the token accepted, the user it names)."""
    token, sep, user = text.partition("=")
    if not sep or not token or not user:
        raise argparse.ArgumentTypeError(f"expected TOKEN=USER, got {text!r}")
    return token, user
