"""The ``hstsync`` command: argument parsing and printing only.

Everything here turns arguments into calls on the modules below and their
results (or :class:`HstsyncError`) into text and SPEC's exit codes:
0 all present and verified, 1 something failed or needs a token, 2 bad usage or
bad configuration (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hstsync import __version__
from hstsync.config import Config, load_config
from hstsync.errors import ConfigError, HstsyncError, StoreError

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (default: $HSTSYNC_CONFIG, the user config dir, "
        "/etc/hstsync/config.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hstsync",
        description="Keep Hubble (HST) programs mirrored from the MAST archive.",
    )
    parser.add_argument("--version", action="version", version=f"hstsync {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="the daemon: watch the request directory and mirror",
        description="Watch the request directory and mirror every request in it. "
        "With --once: take every manifest present, mirror them, exit "
        "(0 all done, 1 something failed or needs a token).",
    )
    _add_config(run)
    run.add_argument(
        "--once", action="store_true", help="one pass over present manifests, then exit"
    )

    status = sub.add_parser(
        "status",
        help="what is mirrored, what is missing and why",
        description="Per request: state, products done/failed/pending/auth-required, bytes. "
        "With REQUEST: that request's products. Safe to run while the daemon runs.",
    )
    _add_config(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("request", nargs="?", metavar="REQUEST", help="show one request's products")

    retry = sub.add_parser(
        "retry",
        help="put failed products back in the queue",
        description="Put failed (and token-refused) products back to pending, for one "
        "request or all; the next pass of the daemon or `run --once` fetches them.",
    )
    _add_config(retry)
    retry.add_argument("request", nargs="?", metavar="REQUEST")

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline against the bundled MAST emulator (no network)",
        description="Start the bundled MAST emulator, mirror the tutorial's proposal 7291 "
        "selection into a temporary directory, and print the status table.",
    )
    demo.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="mirror into DIR and keep it (default: a temporary directory, removed)",
    )

    emulator = sub.add_parser(
        "emulator",
        help="run the bundled MAST emulator on 127.0.0.1",
        description="Run the bundled MAST emulator (see `hstsync emulator --help`).",
        add_help=False,
    )
    emulator.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _configure_logging(verbose: bool) -> None:
    # One line per event to stderr: journald adds its own timestamps under systemd,
    # a terminal user gets them from us.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)
    # astropy's and astroquery's loggers are quietened in resolve.py once imported:
    # creating them here first would give astropy a plain Logger it cannot set up.
    for noisy in ("urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        # The emulator has its own options; hand them over untouched.
        from hstsync.emulator.cli import main as emulator_main

        return emulator_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    _configure_logging(args.verbose)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"hstsync: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"hstsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HstsyncError as exc:
        print(f"hstsync: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from hstsync.demo import run_demo

        return run_demo(args.dir)
    config = load_config(args.config)
    if args.command == "run":
        return _run(config, once=args.once)
    if args.command == "status":
        return _status(config, args.request, as_json=args.json)
    if args.command == "retry":
        return _retry(config, args.request)
    raise AssertionError(f"unhandled command {args.command}")


def _run(config: Config, *, once: bool) -> int:
    from hstsync import daemon

    if once:
        return asyncio.run(daemon.run_once(config))
    return daemon.run_forever(config)


def _retry(config: Config, request: str | None) -> int:
    from hstsync.store import Store

    with Store(config.paths.database) as store:
        if request is not None and store.get_request(request) is None:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        count = store.retry(request)
    print(f"{count} product(s) put back in the queue")
    return EXIT_OK


def _status(config: Config, request: str | None, *, as_json: bool) -> int:
    from hstsync import report
    from hstsync.store import Store

    with Store.open_readonly(config.paths.database) as store:
        summaries = store.summaries(request)
        if request is not None and not summaries:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        products = store.products(request) if request is not None else None
    if as_json:
        doc: dict[str, Any] = report.status_document(summaries, products)
        print(json.dumps(doc, indent=2))
    else:
        report.print_status(summaries, products)
    return EXIT_OK if all(s.request.state == "done" for s in summaries) else EXIT_INCOMPLETE
