"""``python -m hstsync.emulator`` / ``hstsync emulator``: the MAST stand-in as a process.

Owns argument parsing for the emulator only: which programs to add to the default
catalogue (``--program`` for HST, ``--jwst-program`` for JWST, ``--jwst-cloud`` for
the JWST program's bucket copy), which faults to inject, pacing, tokens, and the
real archive's habits (``docs/emulator.md``): ``--executing-rounds``,
``--page-rows``, ``--size-type``, ``--latency-per-obsid``, ``--max-obsids-per-call``,
``--proposal-id-match`` for the portal, ``--product-quirk MATCH:QUIRK[,QUIRK...]``
for files (``chunked``, ``no-ranges``, ``redirect``, ``no-cloud``, ``style=STYLE``,
``null=COLUMN``, ``size=N|N.0|'N'``, ``no-validators``), and ``--no-validators`` for
every file. Prints one line,
``MAST emulator listening on http://HOST:PORT``, then serves until SIGINT or SIGTERM;
the admin calls (``/emulator/admin/...``) change it while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from hstsync.emulator.catalogue import EXCLUSIVE_ACCESS, PUBLIC, Catalogue, default_catalogue
from hstsync.emulator.faults import Fault, FaultKind
from hstsync.emulator.quirks import SIZE_TYPES, BodyStyle, PortalQuirks
from hstsync.emulator.server import Emulator


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


def _obsid_limit(text: str) -> tuple[int, str]:
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


def _size_types(text: str) -> tuple[str, ...]:
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


def _token(text: str) -> tuple[str, str]:
    token, sep, user = text.partition("=")
    if not sep or not token or not user:
        raise argparse.ArgumentTypeError(f"expected TOKEN=USER, got {text!r}")
    return token, user


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hstsync emulator",
        description="Serve a MAST stand-in (portal queries, downloads, whoami) on this machine. "
        "It holds proposal 7291 as MAST's 'Downloading HST Data by Proposal' tutorial shows it, "
        "proposal 12062 with the real archive's habits, and JWST proposal 01345 "
        "(docs/emulator.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free port)")
    parser.add_argument("--rate", type=float, default=None, help="bytes/second per response")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    parser.add_argument(
        "--program",
        type=parse_program,
        action="append",
        default=[],
        metavar="PROPOSAL:FILES:SIZE[:exclusive]",
        help="add a synthetic program of FILES products of SIZE bytes each (repeatable)",
    )
    parser.add_argument(
        "--jwst-program",
        type=parse_jwst_program,
        action="append",
        default=[],
        metavar="PROPOSAL:OBSERVATIONS[:SIZE][:exclusive]",
        help="add a synthetic JWST program of OBSERVATIONS exposure-level observations, with "
        "guide-star files, level-3 products and repeated rows (repeatable)",
    )
    parser.add_argument(
        "--jwst-cloud",
        action="store_true",
        help="put the public files of JWST proposal 01345 in the bucket (jwst/public/...); "
        "synthetic JWST programs always have them there",
    )
    parser.add_argument(
        "--fault",
        type=parse_fault,
        action="append",
        default=[],
        metavar="KIND[:MATCH[:AFTER]][:key=value...]",
        help="inject a fault, e.g. reset:*x2d*:5000000 or status:*:status=429:retry_after=2 "
        f"(kinds: {', '.join(k.value for k in FaultKind)})",
    )
    portal = parser.add_argument_group(
        "the portal's habits", "how slow, paged and typed the portal's replies are"
    )
    portal.add_argument(
        "--executing-rounds",
        type=int,
        default=0,
        metavar="N",
        help="answer each distinct query EXECUTING N times before its result",
    )
    portal.add_argument(
        "--page-rows",
        type=int,
        default=None,
        metavar="N",
        help="the server's page size: at most N rows per reply, whatever was asked",
    )
    portal.add_argument(
        "--size-type",
        type=_size_types,
        default=("int",),
        metavar="TYPE[,TYPE...]",
        help="how the products' size column is declared: int, float or string "
        "(a list is cycled page by page)",
    )
    portal.add_argument(
        "--latency-per-obsid",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a product lookup waits this long for each obsid it names",
    )
    portal.add_argument(
        "--proposal-id-match",
        choices=("exact", "numeric"),
        default="exact",
        help="how a proposal_id criterion matches: the stored string only (exact: '1345' "
        "does not find JWST's '01345') or by number (numeric: both find it)",
    )
    portal.add_argument(
        "--max-obsids-per-call",
        type=_obsid_limit,
        default=None,
        metavar="N[:hang]",
        help="a product lookup naming more than N obsids fails: an ERROR reply, or with "
        ":hang no reply at all",
    )
    parser.add_argument(
        "--product-quirk",
        type=parse_product_quirk,
        action="append",
        default=[],
        metavar="MATCH:QUIRK[,QUIRK...]",
        help="give matching files a habit: chunked, no-ranges, redirect, no-cloud, "
        "no-validators, style=fits|fits_no_checksum|fits_odd_header|jpeg|text, null=COLUMN, "
        "size=N|N.0|'N' "
        "(repeatable)",
    )
    parser.add_argument(
        "--no-validators",
        dest="validators",
        action="store_false",
        help="serve files without ETag and Last-Modified, and ignore If-None-Match, "
        "If-Modified-Since and If-Range (whether MAST sends validators is not confirmed)",
    )
    parser.add_argument(
        "--token",
        type=_token,
        action="append",
        default=[],
        metavar="TOKEN=USER",
        help="accept TOKEN for exclusive-access data, as USER (repeatable)",
    )
    return parser


#: the smallest valid FITS file the emulator serves: a header block and a data block
FITS_BLOCK, FITS_MIN = 2880, 5760


def fits_size(size: int) -> int:
    """``size`` rounded up to a size the emulator can serve as a valid FITS file."""
    return max(FITS_MIN, -(-size // FITS_BLOCK) * FITS_BLOCK)


def _holdings(emulator: Emulator) -> list[str]:
    """``proposal N: F products, B bytes`` for each proposal the catalogue holds, its
    collection named when it is not HST (``... (JWST)``)."""
    tally: dict[str, list[int]] = {}
    collections: dict[str, str] = {}
    for obs in emulator.catalogue.observations():
        pid = str(obs.fields.get("proposal_id", "?"))
        entry = tally.setdefault(pid, [0, 0])
        entry[0] += len(obs.products)
        entry[1] += sum(p.size for p in obs.products)
        collections.setdefault(pid, str(obs.fields.get("obs_collection") or "HST"))
    return [
        f"  proposal {pid}: {n} products, {size} bytes"
        + (f" ({collections[pid]})" if collections[pid] != "HST" else "")
        for pid, (n, size) in tally.items()
    ]


async def _serve(emulator: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(f"MAST emulator listening on {emulator.url}", flush=True)
        print("point hstsync at it with these lines in its configuration file:")
        print(f'  [mast]\n  server = "{emulator.url}"')
        print("it holds:")
        print("\n".join(_holdings(emulator)), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    catalogue = default_catalogue(jwst_cloud=args.jwst_cloud)
    catalogue.proposal_id_match = args.proposal_id_match
    for program in args.program:
        size = fits_size(program.size)
        if size != program.size:
            # Files are served as FITS and verified as FITS: any other size could not be.
            print(
                f"hstsync emulator: proposal {program.proposal_id}: size {program.size} "
                f"rounded up to {size}, a valid FITS size (a multiple of {FITS_BLOCK}, at "
                f"least {FITS_MIN})",
                file=sys.stderr,
            )
        catalogue.add_program(
            program.proposal_id,
            files=program.files,
            size=size,
            data_rights=program.data_rights,
        )
    for jwst in args.jwst_program:
        size = fits_size(jwst.size)
        if size != jwst.size:
            print(
                f"hstsync emulator: proposal {jwst.proposal_id}: size {jwst.size} rounded up "
                f"to {size}, a valid FITS size",
                file=sys.stderr,
            )
        try:
            catalogue.add_jwst_program(
                jwst.proposal_id,
                observations=jwst.observations,
                size=size,
                data_rights=jwst.data_rights,
            )
        except ValueError as exc:
            print(f"hstsync emulator: proposal {jwst.proposal_id}: {exc}", file=sys.stderr)
            return 2
    for quirk in args.product_quirk:
        if not quirk.apply(catalogue):
            print(f"hstsync emulator: no product matches {quirk.match!r}", file=sys.stderr)
            return 2
    try:
        quirks = PortalQuirks(
            executing_rounds=args.executing_rounds,
            page_rows=args.page_rows,
            size_types=args.size_type,
            latency_per_obsid=args.latency_per_obsid,
            max_obsids_per_call=args.max_obsids_per_call[0] if args.max_obsids_per_call else None,
            too_many_obsids=args.max_obsids_per_call[1] if args.max_obsids_per_call else "error",
        )
    except ValueError as exc:
        print(f"hstsync emulator: {exc}", file=sys.stderr)
        return 2
    emulator = Emulator(
        catalogue,
        host=args.host,
        port=args.port,
        rate=args.rate,
        latency=args.latency,
        tokens=dict(args.token),
        quirks=quirks,
        validators=args.validators,
    )
    for fault in args.fault:
        emulator.faults.add(fault)
    try:
        asyncio.run(_serve(emulator))
    except OSError as exc:
        print(
            f"hstsync emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    return 0
