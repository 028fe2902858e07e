"""The ``hstsync`` command: argument parsing and printing only.

Everything here turns arguments into calls on the modules below and their
results (or :class:`HstsyncError`) into text and SPEC's exit codes (:data:`EXIT_CODES`,
also in ``--help`` and README): 0 all present and verified, 1 not all there yet
(failed, needs a token, or still queued/downloading: the state is named), 2 bad usage
or bad configuration (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hstsync import __version__
from hstsync.archive.auth import TOKEN_PAGE, checked
from hstsync.config import Config, MastConfig, candidate_paths, load_config
from hstsync.errors import (
    AlreadyRunningError,
    ConfigError,
    HstsyncError,
    ManifestError,
    StoreError,
)

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2

EXIT_CODES = (
    "exit codes: 0 every requested product is present and verified; "
    "1 not all there: a product failed or needs a MAST token, a manifest was invalid, "
    "or a request is still queued, resolving or downloading (named on stderr); "
    "2 bad usage or bad configuration (one line on stderr)"
)


def _verbose_option(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Accepted before and after the command; SUPPRESS keeps a subcommand's absent flag
    # from resetting one given before it.
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log debug details",
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
        description="Keep Hubble (HST) programs mirrored from the MAST archive.",
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
        "store it in the keyring entry astroquery's Observations.login(store_token=True) "
        f"uses. Tokens are made at {TOKEN_PAGE}.",
    )
    _add_config(login)
    logout = sub.add_parser(
        "logout",
        help="remove the MAST API token from the keyring",
        description="Remove the keyring entry `hstsync login` (and astroquery) wrote.",
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


def _under_journald() -> bool:
    """Whether stderr is systemd's journal stream (it stamps each line itself)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{info.st_dev}:{info.st_ino}"


def log_format() -> str:
    """One line per event; stamped unless journald stamps it (nohup, cron, a file, a
    terminal all get the time)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    return fmt if _under_journald() else "%(asctime)s " + fmt


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=log_format(),
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    # astropy's and astroquery's loggers are quietened in resolve.py once imported:
    # creating them here first would give astropy a plain Logger it cannot set up.
    # watchfiles logs "N changes detected" at INFO for every batch of file events.
    for noisy in ("urllib3", "aiohttp.access", "watchfiles"):
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
    code = EXIT_INCOMPLETE  # if output stops before the command has finished
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # `hstsync status | head -1`: the reader has all it wanted; end quietly, as
        # other tools do, with the command's own code when it had finished.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return code
    except ConfigError as exc:
        print(f"hstsync: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, AlreadyRunningError) as exc:
        print(f"hstsync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HstsyncError as exc:
        message = str(exc)
        if _loaded and _loaded[-1].source is not None:  # name the file to check
            message = message.replace("the configuration file", str(_loaded[-1].source))
        print(f"hstsync: {message}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        return 130


#: the configuration a command loaded, for error messages that name its file
_loaded: list[Config] = []


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from hstsync.cli.demo import run_demo

        return run_demo(args.dir, keep=args.keep)
    if args.command in ("login", "logout", "whoami"):
        mast = _mast_config(args.config)
        if args.command == "login":
            return _login(mast)
        if args.command == "logout":
            return _logout(mast)
        return _whoami(mast)
    config = load_config(args.config)
    _loaded.append(config)
    if args.command == "run":
        return _run(config, once=args.once)
    if args.command == "status":
        return _status(config, request_arg(args.request), as_json=args.json)
    if args.command == "retry":
        return _retry(config, request_arg(args.request))
    if args.command == "plan":
        return _plan(config, manifest_arg(config, args.manifest))
    if args.command == "add":
        return _add(config, args)
    if args.command == "export-curl":
        return _export_curl(config, request_arg(args.request) or args.request)
    raise AssertionError(f"unhandled command {args.command}")


def request_arg(text: str | None) -> str | None:
    """A request named on the command line: its name, or the path of its manifest
    (``requests/7291.toml`` -> ``7291``), wherever that manifest is now."""
    if text is None:
        return None
    from hstsync.archive.manifest import is_manifest_name, request_name

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


class UsageError(ConfigError):
    """Bad arguments: exit 2 with the reason."""


def _run(config: Config, *, once: bool) -> int:
    from hstsync.service import daemon

    if once:
        if not sys.stderr.isatty():
            return asyncio.run(daemon.run_once(config))
        from hstsync.cli.progress import TerminalProgress

        with TerminalProgress() as progress:
            return asyncio.run(daemon.run_once(config, progress))
    return daemon.run_forever(config)


def _plan(config: Config, manifest: Path) -> int:
    from hstsync.archive.manifest import parse_manifest
    from hstsync.archive.resolve import Resolver
    from hstsync.cli.report import print_plan
    from hstsync.service.holdings import plan_files

    try:
        request = parse_manifest(manifest)
    except ManifestError as exc:
        raise UsageError(str(exc)) from None
    token = _lenient_token(config.mast)
    resolver = Resolver(
        config.mast.server, token.value if token else None, timeout=config.mast.timeout
    )
    plan = plan_files(resolver.resolve(request), config.paths.mirror)
    unwritable = unwritable_reason(config.paths.mirror)
    print_plan(request.name, plan, unwritable=unwritable)
    return EXIT_OK if plan.fits and unwritable is None else EXIT_INCOMPLETE


def unwritable_reason(directory: Path) -> str | None:
    """Why files cannot be written under ``directory`` (or the nearest existing parent it
    would be created in), or None when they can."""
    import errno

    target = directory
    while not target.exists() and target.parent != target:
        target = target.parent
    try:
        os.statvfs(target)
    except OSError as exc:
        return f"cannot look at {target}: {exc.strerror}"
    if os.access(target, os.W_OK | os.X_OK):
        return None
    if os.statvfs(target).f_flag & os.ST_RDONLY:
        return f"{target} is on a read-only file system ({errno.errorcode[errno.EROFS]})"
    return f"{target} is not writable by this user"


def _lenient_token(mast: MastConfig) -> Any:
    """The token for a read-only command: a missing ``token_file`` (a systemd credential
    seen from outside its unit) is a warning and no token, not an error."""
    from hstsync.archive.auth import find_token

    if mast.token_file is not None and not mast.token_file.exists():
        print(
            f"hstsync: warning: mast.token_file {mast.token_file} does not exist here "
            "(a systemd credential is only visible inside its unit); going on without "
            "that token",
            file=sys.stderr,
        )
        return find_token(None)
    return find_token(mast.token_file)


def _add(config: Config, args: argparse.Namespace) -> int:
    from hstsync.archive.manifest import write_manifest
    from hstsync.model import Request

    criteria: dict[str, Any] = {}
    if args.instrument:
        criteria["instrument_name"] = args.instrument
    if args.obs_id:
        criteria["obs_id"] = args.obs_id
    filters: dict[str, Any] = {}
    if args.calib_level:
        filters["calib_level"] = args.calib_level
    if args.product_type:
        filters["productType"] = args.product_type
    if args.extension:
        filters["extension"] = args.extension
    if args.mrp_only:
        filters["mrp_only"] = True
    name = args.name or args.proposal_id[0]
    # render_manifest checks its text with the manifest parser itself, so `add`
    # never writes a manifest the daemon would refuse.
    try:
        request = Request(name, tuple(args.proposal_id), criteria, filters)
        path = write_manifest(config.paths.requests, request, replace=args.replace)
    except ManifestError as exc:
        hint = "; use --replace to overwrite it" if "exists already" in str(exc) else ""
        raise UsageError(f"{exc}{hint}") from None
    print(f"wrote {path}")
    return EXIT_OK


def _export_curl(config: Config, request: str) -> int:
    from hstsync.cli.curl import curl_script
    from hstsync.model import relpath_or_none
    from hstsync.service.fetcher import download_url
    from hstsync.store.db import Store

    with Store.open_readonly(config.paths.database) as store:
        if store.get_request(request) is None:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        rows = store.products(request)
    safe = [
        (row.product, download_url(config.mast.server, row.product.data_uri))
        for row in rows
        if relpath_or_none(row.product) is not None
    ]
    sys.stdout.write(curl_script(request, safe))
    return EXIT_OK


def _retry(config: Config, request: str | None) -> int:
    from hstsync.store.db import Store

    with Store(config.paths.database) as store:
        if request is not None and store.get_request(request) is None:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        count = store.retry(request)
        lookups = store.retry_lookups(request)
    if count or lookups:
        from hstsync.service.daemon import wake

        wake(config.paths.requests)
    print(f"{count} product(s) put back in the queue")
    if lookups:
        print(f"{lookups} failed lookup(s) to be tried again now")
    return EXIT_OK


def _status(config: Config, request: str | None, *, as_json: bool) -> int:
    from hstsync.cli import report
    from hstsync.service import status
    from hstsync.service.runlock import daemon_status
    from hstsync.store.db import Store

    with Store.open_readonly(config.paths.database) as store:
        summaries = store.summaries(request)
        if request is not None and not summaries:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        products = store.products(request) if request is not None else None
    running, pid, beat = daemon_status(config)
    if as_json:
        doc: dict[str, Any] = status.status_document(summaries, products)
        doc["daemon"] = {"running": running, "pid": pid, "heartbeat": beat}
        print(json.dumps(doc, indent=2))
    else:
        report.print_status(summaries, products)
        print(report.daemon_line(running, pid, beat, time.time()))
    unfinished = [s.request for s in summaries if s.request.state != "done"]
    if not unfinished:
        return EXIT_OK
    sys.stdout.flush()
    named = ", ".join(f"{r.name} is {r.state}" for r in unfinished[:5])
    more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
    print(f"hstsync: not all done: {named}{more}", file=sys.stderr)
    return EXIT_INCOMPLETE


# -- the MAST token ------------------------------------------------------------------------


def _mast_config(explicit: Path | None) -> MastConfig:
    """The [mast] table; without any configuration file, the real archive."""
    if explicit is None and not any(p.exists() for p in candidate_paths(None, os.environ)):
        return MastConfig()
    return load_config(explicit).mast


def _read_token() -> str:
    if sys.stdin.isatty():
        print(f"A MAST API token can be made at {TOKEN_PAGE}", file=sys.stderr)
        text = getpass.getpass("MAST API token: ")  # no echo
    else:
        text = sys.stdin.read(4096)  # scripts: `hstsync login < file`
    if not text.strip():
        raise ConfigError("no token given")
    return checked(text, "the token given")


def _session(server: str, token: str | None) -> dict[str, Any]:
    from hstsync.archive.resolve import Resolver

    return Resolver(server, token).session_info()


def _login(mast: MastConfig) -> int:
    from hstsync.archive import auth

    auth.require_keyring()  # before the token is typed, not after
    token = _read_token()
    info = _session(mast.server, token)
    if auth.is_anonymous(info):
        print(
            f"hstsync: {mast.server} does not accept this token (mistyped, expired or "
            f"revoked?); make a new one at {TOKEN_PAGE}",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    auth.store_in_keyring(token)
    print(f"MAST token accepted for {auth.user_of(info)}; stored in the keyring")
    shadow = _shadowing(mast)
    if shadow:
        print(f"note: {shadow} comes first, so hstsync uses that token, not this one")
    return EXIT_OK


def _shadowing(mast: MastConfig) -> str | None:
    """A token source that takes precedence over the keyring, if one is set."""
    if mast.token_file is not None:
        return f"mast.token_file ({mast.token_file})"
    if os.environ.get("MAST_API_TOKEN", "").strip():
        return "$MAST_API_TOKEN"
    return None


def renew_advice(source: str | None, mast: MastConfig) -> str:
    """What to do about the token from ``source`` (a :class:`Token`'s), or about having
    none: advice that can work where it is given."""
    if source == "token_file":
        return f"write it into {mast.token_file} (mast.token_file, which comes first)"
    if source == "environment":
        return (
            "put it in $MAST_API_TOKEN (it takes precedence over the keyring, so "
            "`hstsync login` alone would not help), or unset MAST_API_TOKEN and run "
            "`hstsync login`"
        )
    if _keyring_usable():
        return "run `hstsync login`"
    return (
        "set MAST_API_TOKEN or point [mast] token_file at a file holding it "
        "(`hstsync login` needs a keyring, and there is none here)"
    )


def _keyring_usable() -> bool:
    from hstsync.archive import auth

    try:
        auth.require_keyring()
    except HstsyncError:
        return False
    return True


def _logout(mast: MastConfig) -> int:
    from hstsync.archive import auth

    if auth.remove_from_keyring():
        print("MAST token removed from the keyring")
    else:
        print("no MAST token was stored in the keyring")
    shadow = _shadowing(mast)
    if shadow:
        print(f"note: {shadow} still provides a token")
    return EXIT_OK


def _whoami(mast: MastConfig) -> int:
    from hstsync.archive import auth

    token = _lenient_token(mast)
    if token is None:
        print(
            "hstsync: no MAST token (looked in mast.token_file, $MAST_API_TOKEN and the "
            "keyring): public data only; for exclusive-access data " + renew_advice(None, mast),
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    info = _session(mast.server, token.value)
    print(f"token from: {token.describe()}")
    print(f"server: {mast.server}")
    for line in auth.session_lines(info, token.value):
        print(line)
    if auth.is_anonymous(info):
        print(
            f"hstsync: {mast.server} does not accept the token from {token.describe()} "
            f"(expired or revoked?); make a new one at {TOKEN_PAGE} and "
            + renew_advice(token.source, mast),
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    warning = auth.session_warning(info)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK
