"""``python -m hstsync.emulator`` / ``hstsync emulator``: the MAST stand-in as a process.

Owns the emulator's command line and what it assembles from it: which programs to
add to the default catalogue (``--program`` for HST, ``--jwst-program`` for JWST,
``--jwst-cloud`` for the JWST program's bucket copy), which faults to inject, pacing,
tokens, and the real archive's habits (``docs/emulator.md``): ``--executing-rounds``,
``--page-rows``, ``--size-type``, ``--latency-per-obsid``, ``--max-obsids-per-call``,
``--proposal-id-match`` for the portal, ``--product-quirk MATCH:QUIRK[,QUIRK...]``
for files (``chunked``, ``no-ranges``, ``redirect``, ``no-cloud``, ``style=STYLE``,
``null=COLUMN``, ``size=N|N.0|'N'``, ``no-validators``), and ``--no-validators`` for
every file. Each switch's value is read by :mod:`hstsync.emulator.switches`; this
module names the switches, builds the catalogue and the :class:`Emulator` from what
they say, and serves. Prints ``MAST emulator listening on http://HOST:PORT`` first,
then what it holds, and serves until SIGINT or SIGTERM; the admin calls
(``/emulator/admin/...``) change it while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from hstsync.emulator.catalogue import default_catalogue
from hstsync.emulator.faults import FaultKind
from hstsync.emulator.quirks import PortalQuirks
from hstsync.emulator.server import Emulator
from hstsync.emulator.switches import (
    obsid_limit,
    parse_fault,
    parse_jwst_program,
    parse_product_quirk,
    parse_program,
    size_types,
    token_user,
)


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
        type=size_types,
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
        type=obsid_limit,
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
        type=token_user,
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
