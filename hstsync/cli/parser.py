"""What can be typed: the argument parser of every command, and how a request or a
manifest named on the command line is found.

:func:`build_parser` is also what ``tests/test_docs.py`` holds README against, so a
command's help text here is its documentation.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hstsync import __version__
from hstsync.cli.exits import EXIT_CODES
from hstsync.config import TOKEN_PAGE
from hstsync.errors import UsageError

if TYPE_CHECKING:
    from hstsync.config import Config


#: the options every command takes, before or after its name (``hstsync -v emulator``)
LOUDNESS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


def _verbose_option(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Accepted before and after the command; SUPPRESS keeps a subcommand's absent flag
    # from resetting one given before it.
    default = False if top else argparse.SUPPRESS
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log debug details"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="log only warnings and errors (no live progress); -v wins over -q",
    )


def _add_config(parser: argparse.ArgumentParser) -> None:
    _verbose_option(parser)
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
        description="Keep Hubble (HST) and JWST programs mirrored from the MAST archive.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"hstsync {__version__}")
    _verbose_option(parser, top=True)
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
        "With REQUEST (a name, or the path of its manifest): that request's products. "
        "Safe to run while the daemon runs. " + EXIT_CODES + ".",
    )
    _add_config(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "request",
        nargs="?",
        metavar="REQUEST",
        help="show one request's products (a request name or a manifest path)",
    )

    plan = sub.add_parser(
        "plan",
        help="resolve a manifest and show what would be fetched (downloads nothing)",
        description="Resolve MANIFEST through the archive and print the products that would "
        "be fetched (obs_id, productFilename, productType, calib_level, size), how many are "
        "already mirrored, the total to fetch, and whether the mirror's filesystem has room. "
        "Exit 1 when it would not fit or the mirror is not writable. MANIFEST is a path, or "
        "a request name (its manifest in the request directory).",
    )
    _add_config(plan)
    plan.add_argument("manifest", metavar="MANIFEST")

    add = sub.add_parser(
        "add",
        help="write a manifest into the request directory (atomically)",
        description="Write NAME.toml for PROPOSAL_ID into the request directory, through a "
        ".tmp file and a rename, so a running daemon takes it whole.",
    )
    _add_config(add)
    add.add_argument("proposal_id", nargs="+", metavar="PROPOSAL_ID")
    add.add_argument("--name", help="request name (default: the first proposal id)")
    add.add_argument(
        "--collection",
        default="HST",
        type=str.upper,
        metavar="NAME",
        help="HST (the default) or JWST ([criteria] obs_collection)",
    )
    add.add_argument("--calib-level", type=int, action="append", metavar="N")
    add.add_argument("--product-type", action="append", metavar="TYPE", help="e.g. SCIENCE")
    add.add_argument("--extension", action="append", metavar="EXT", help="e.g. fits")
    add.add_argument("--instrument", action="append", metavar="NAME", help="e.g. STIS/CCD")
    add.add_argument("--obs-id", action="append", metavar="OBS_ID")
    add.add_argument("--mrp-only", action="store_true", help="minimum recommended products")
    add.add_argument("--replace", action="store_true", help="overwrite an existing manifest")

    export = sub.add_parser(
        "export-curl",
        help="print a resumable curl script for a request's files",
        description="Print a shell script of curl commands (resuming with -C -) that fetch "
        "REQUEST's files into ./mastDownload/, for machines where hstsync does not run. "
        "Exclusive-access files read $MAST_API_TOKEN when the script runs. Run again, the "
        "script skips files already complete and resumes partial ones. REQUEST is a request "
        "name or the path of its manifest.",
    )
    _add_config(export)
    export.add_argument("request", metavar="REQUEST")

    retry = sub.add_parser(
        "retry",
        help="put failed products back in the queue",
        description="Put failed (and token-refused) products back to pending, for one "
        "request or all; the next pass of the daemon or `run --once` fetches them. "
        "REQUEST is a request name or the path of its manifest.",
    )
    _add_config(retry)
    retry.add_argument("request", nargs="?", metavar="REQUEST")

    verify = sub.add_parser(
        "verify",
        help="is the mirror still the archive? fetch again what is not",
        description="For each request (or REQUEST): ask the archive again, then check every "
        "mirrored file here (there, its size, its bytes hashing to the SHA-256 recorded when "
        "it landed) and on the archive (a conditional request, or at most 64 KiB of the "
        "file's head compared with ours). Files missing or damaged here, and files the "
        "archive changed, are fetched again; a replaced version goes to <mirror>/attic/. "
        "Prints how many files are the same, changed, missing, damaged, withdrawn. Exit 0 "
        "when every listed product's file is the archive's (withdrawn files are reported, "
        "not failures). REQUEST is a request name or the path of its manifest.",
    )
    _add_config(verify)
    verify.add_argument("request", nargs="?", metavar="REQUEST")
    verify.add_argument(
        "--dry-run",
        action="store_true",
        help="check and report only: nothing fetched, moved or recorded (beside a daemon too)",
    )
    verify.add_argument("--json", action="store_true", help="the verdict of every file, as JSON")

    prune = sub.add_parser(
        "prune",
        help="move withdrawn files to the attic",
        description="Move the files of withdrawn products (the archive or the manifest no "
        "longer lists them) to <mirror>/attic/, for one request or all; without REQUEST "
        "also the files of requests since removed that no request lists. A file another "
        "request still lists stays. Nothing is deleted.",
    )
    _add_config(prune)
    prune.add_argument("request", nargs="?", metavar="REQUEST")
    prune.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline against the bundled MAST emulator (no network)",
        description="Start the bundled MAST emulator, mirror the tutorial's proposal 7291 "
        "selection into a temporary directory, and print the status table.",
    )
    _verbose_option(demo)
    demo.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="mirror into DIR and keep it (default: a temporary directory, removed)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary directory and say where it is"
    )

    login = sub.add_parser(
        "login",
        help="check a MAST API token and store it in the keyring",
        description="Read a MAST API token (typed without echo, or from stdin when it is "
        "not a terminal), check it against the configured server's session info, and "
        "store it in the keyring: for MAST, the entry astroquery's "
        "Observations.login(store_token=True) uses; for any other server (the emulator, "
        "say), an entry of that server's own, so MAST's token is never replaced. Tokens "
        f"are made at {TOKEN_PAGE}.",
    )
    _add_config(login)
    logout = sub.add_parser(
        "logout",
        help="remove the MAST API token from the keyring",
        description="Remove the keyring entry `hstsync login` (and, for MAST, astroquery) "
        "wrote for the configured server.",
    )
    _add_config(logout)
    whoami = sub.add_parser(
        "whoami",
        help="whom the archive takes the MAST token for (never prints the token)",
        description="Ask the configured server who the current MAST token belongs to, as "
        "Observations.session_info() shows it, and say where the token came from. "
        "Exit 1 when there is no token or the archive does not accept it.",
    )
    _add_config(whoami)

    emulator = sub.add_parser(
        "emulator",
        help="run the bundled MAST emulator on 127.0.0.1",
        description="Run the bundled MAST emulator (see `hstsync emulator --help`).",
        add_help=False,
    )
    emulator.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def request_arg(text: str | None) -> str | None:
    """A request named on the command line: its name, or the path of its manifest
    (``requests/7291.toml`` -> ``7291``), wherever that manifest is now."""
    if text is None:
        return None
    from hstsync.archive import is_manifest_name, request_name

    path = Path(text)
    if os.sep in text or (is_manifest_name(path.name) and path.suffix in (".toml", ".json")):
        return request_name(path)
    return text


def manifest_arg(config: Config, text: str) -> Path:
    """A manifest named on the command line: a path, or a request name whose manifest
    is in the request directory."""
    path = Path(text)
    if path.exists() or os.sep in text or path.suffix in (".toml", ".json"):
        return path
    for suffix in (".toml", ".json"):
        candidate = config.paths.requests / f"{text}{suffix}"
        if candidate.exists():
            return candidate
    raise UsageError(
        f"{text!r} is neither a manifest file nor a request in {config.paths.requests}"
    )
