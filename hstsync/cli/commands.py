"""The ``hstsync`` command: parse, dispatch, and turn errors into exit codes.

The codes are docs/design.md, "Exit codes".

:func:`main` is the console script. It hands each command to the module of its group
(``mirroring``: run, plan, status, retry; ``upkeep``: verify, prune; ``manifests``: add,
export-curl; ``token``: login, logout, whoami; ``demo``), and turns
:class:`HstsyncError` into one line on stderr and the exit codes of
:mod:`hstsync.cli.exits` (never a traceback). Logging is set up here, stamped unless
journald stamps it (not for ``status``, which only prints).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from hstsync.cli.exits import EXIT_INCOMPLETE, EXIT_USAGE
from hstsync.cli.parser import LOUDNESS, build_parser, manifest_arg, request_arg
from hstsync.errors import (
    AlreadyRunningError,
    ConfigError,
    HstsyncError,
    StoreError,
)
from hstsync.text import printable

if TYPE_CHECKING:
    from hstsync.config import Config


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


#: commands that print and never log: they do not even import logging (issue #14, status
#: within 0.1 s as a whole process)
_SILENT = frozenset({"status"})


def _configure_logging(verbose: bool, quiet: bool = False) -> None:
    import logging

    # A line per file is logged: none of them needs its caller found (a walk up the
    # stack) or the thread and process names, which the format does not show (the
    # logging HOWTO's "Optimization" section)
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    from hstsync.cli.logformat import PrintableFormatter

    before = list(logging.getLogger().handlers)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format=log_format(),
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    # archive text and file names in a message must not act on the terminal, nor forge
    # a line of their own
    for handler in logging.getLogger().handlers:
        if handler not in before:  # basicConfig's own, not one a host program set up
            handler.setFormatter(PrintableFormatter(log_format(), "%Y-%m-%dT%H:%M:%S%z"))
    # astropy's and astroquery's loggers are quietened in archive/client.py once imported:
    # creating them here first would give astropy a plain Logger it cannot set up.
    # watchfiles logs "N changes detected" at INFO for every batch of file events.
    for noisy in ("urllib3", "aiohttp.access", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _emulator_args(argv: list[str]) -> tuple[list[str], set[str]] | None:
    """``hstsync [-v] emulator ARGS``: the emulator's own arguments and the loudness
    options given before or among them (which every command takes); None for another
    command."""
    lead = 0
    while lead < len(argv) and argv[lead] in LOUDNESS:
        lead += 1
    if argv[lead : lead + 1] != ["emulator"]:
        return None
    rest = argv[:lead] + argv[lead + 1 :]
    return [a for a in rest if a not in LOUDNESS], {LOUDNESS[a] for a in rest if a in LOUDNESS}


def run() -> NoReturn:
    """The ``hstsync`` command: :func:`main`, then out at once.

    By the time a command returns, everything it made is closed and durable (the
    store, the mirror's files, the results table, the hook's runs), so the interpreter's
    teardown, which frees every module astropy and numpy loaded (about 70 ms, most of
    a ``status``), is skipped: output is flushed, logging shut down, then ``os._exit``.
    A command that raises still leaves through the interpreter (its traceback).
    """
    code = main()
    if (logging := sys.modules.get("logging")) is not None:  # status never imports it
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a reader gone
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    emulator = _emulator_args(args_list)
    if emulator is not None:
        # The emulator has its own options; hand them over, but for -v and -q.
        from hstsync.emulator import main as emulator_main

        own, loudness = emulator
        if "verbose" in loudness:
            _configure_logging(verbose=True)
        return emulator_main(own)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command not in _SILENT:
        _configure_logging(args.verbose, args.quiet)
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
        print(f"hstsync: configuration error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreError, AlreadyRunningError) as exc:
        print(f"hstsync: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except HstsyncError as exc:
        message = str(exc)
        if _loaded and _loaded[-1].source is not None:  # name the file to check
            message = message.replace("the configuration file", str(_loaded[-1].source))
        print(f"hstsync: {printable(message)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        return 130


#: the configuration a command loaded, for error messages that name its file
_loaded: list[Config] = []


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from hstsync.cli.demo import run_demo

        return run_demo(args.dir, keep=args.keep)
    # Each group's module is imported when its command runs: `status` and `--version`
    # load neither astroquery, aiohttp, asyncio nor sqlite-utils (tests/test_cli_imports.py).
    if args.command in ("login", "logout", "whoami"):
        from hstsync.cli import token

        mast = token.mast_config(args.config)
        if args.command == "login":
            return token.cmd_login(mast)
        if args.command == "logout":
            return token.cmd_logout(mast)
        return token.cmd_whoami(mast)
    from hstsync.cli import mirroring
    from hstsync.config import load_config

    config = load_config(args.config)
    _loaded.append(config)
    if args.command == "run":
        return mirroring.cmd_run(config, once=args.once, verbose=args.verbose, quiet=args.quiet)
    if args.command == "status":
        return mirroring.cmd_status(config, request_arg(args.request), as_json=args.json)
    if args.command == "retry":
        return mirroring.cmd_retry(config, request_arg(args.request))
    if args.command == "plan":
        return mirroring.cmd_plan(config, manifest_arg(config, args.manifest))
    if args.command in ("verify", "prune"):
        from hstsync.cli import upkeep

        request = request_arg(args.request)
        if args.command == "verify":
            return upkeep.cmd_verify(config, request, dry_run=args.dry_run, as_json=args.json)
        return upkeep.cmd_prune(config, request, dry_run=args.dry_run)
    from hstsync.cli import manifests

    if args.command == "add":
        return manifests.cmd_add(config, args)
    if args.command == "export-curl":
        return manifests.cmd_export_curl(config, request_arg(args.request) or args.request)
    raise AssertionError(f"unhandled command {args.command}")
