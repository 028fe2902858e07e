"""Benchmark: JWST programs (issue #25): a big program with repeated rows, and a 5 GB file.

``python bench/jwst.py`` (``--only program`` or ``--only big`` for one part) measures
against the bundled MAST emulator, run as its own process by this script
(``--serve``), which at its end writes what it was asked: each product list's obsids
and each file's GETs.

1. **program**: a synthetic JWST program of ``--observations`` (2,000) exposure-level
   observations with the archive's repeats (``Catalogue.add_jwst_program``,
   ``repeats=3``: every level-3 file listed again under each of its 100 members, the
   members' files under the level-3 observation, ten guide-star files a visit under its
   four exposures: 11,100 unique files of 5,760 B in 74,100 rows). ``hstsync plan``
   (resolution alone: its wall time and CPU, and its peak memory) and ``hstsync run
   --once`` (resolution and every file), each a whole process: peak RSS (``ru_maxrss``
   from ``os.wait4``) and peak anonymous memory (``RssAnon`` polled every 20 ms from
   ``/proc``; without the pages of files the process maps). ``run --once`` must exit 0
   with every unique file mirrored, each asked for exactly once.
2. **big**: one level-3 mosaic of ``--big`` bytes (5,000,002,560: astroquery#3066's
   5.4 GB i2d, rounded to FITS blocks), the emulator pacing each response to
   ``--rate`` bytes/s after ``--latency`` s; ``hstsync run --once`` at ``--budget``
   connections (``concurrency``, ``connections`` and ``per_host``): the transfer as
   the emulator saw it (first body byte to last, from the served-bytes admin call
   polled every 0.05 s) against the floor (``floor_seconds`` of ``_common.py`` without
   the latency, which comes before the first byte: all bytes over every lane at the
   per-response rate), the whole run, its CPU, peak RSS and peak anonymous memory, and
   the file's SHA-256 against the emulator's body.

Usage: ``python bench/jwst.py [--only program,big] [--observations 2000] [--big BYTES]
[--rate 20e6] [--budget 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import PYTHON, ToolFailed, floor_seconds, fresh, hstsync_setup

HERE = Path(__file__).resolve().parent
#: the synthetic program's proposal id (kept by the catalogue as "04567")
PROGRAM = 4567
BIG = 1_736_112 * 2880  # 5,000,002,560 bytes
L3 = "jw01345-o001_t001_nircam_clear-f200w"
SECTIONS = ("program", "big")


# -- the emulator, as a process of this script -----------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """``--serve``: the emulator with the program asked for, until SIGTERM; then what
    it was asked, as JSON in ``--stats``."""
    from hstsync.emulator import Catalogue, Emulator, add_jwst_program

    catalogue = Catalogue()
    if args.observations:
        catalogue.add_jwst_program(PROGRAM, observations=args.observations, repeats=args.repeats)
    if args.big:
        add_jwst_program(catalogue, i2d_size=args.big)
    emulator = Emulator(catalogue, rate=args.rate or None, latency=args.latency)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with emulator:
            print(f"MAST emulator listening on {emulator.url}", flush=True)
            await stop.wait()

    asyncio.run(run())
    lists = [
        len(json.loads(_form(r.body))["params"]["obsid"].split(","))
        for r in emulator.requests
        if "Mast.Caom.Products" in _form(r.body)
    ]
    gets = Counter(r.data_uri for r in emulator.requests if r.method == "GET" and r.data_uri)
    Path(args.stats).write_text(json.dumps({"lists": lists, "gets": gets}))


def _form(body: str) -> str:
    from urllib.parse import parse_qs

    return parse_qs(body).get("request", [""])[0]


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]
    stats: Path

    def served(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/emulator/admin/served", timeout=30) as reply:
            return dict(json.load(reply))

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        return dict(json.loads(self.stats.read_text()))


def start_emulator(work: Path, *extra: str) -> Served:
    stats = work / "emulator-stats.json"
    command = [PYTHON, str(Path(__file__).resolve()), "--serve", "--stats", str(stats), *extra]
    log = (work / "emulator.log").open("ab")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        raise SystemExit(f"emulator did not start: {line!r}")
    return Served(line[line.index("http://") :].strip(), proc, stats)


# -- a measured process ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proc:
    seconds: float
    status: int
    cpu: float
    rss_mib: float
    anon_mib: float
    log: str


def measured(command: list[str], cwd: Path, env: dict[str, str]) -> Proc:
    """Run to completion: wall s, exit status, CPU s, peak RSS (``ru_maxrss``) and peak
    anonymous memory (``RssAnon``, polled) of that one process."""
    path = cwd / f"{time.monotonic_ns()}.log"
    peak_anon = 0
    done = threading.Event()
    started = time.perf_counter()
    with path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)

        def poll() -> None:
            nonlocal peak_anon
            while not done.is_set():
                peak_anon = max(peak_anon, _anon_kib(proc.pid))
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        poller.join()
    seconds = time.perf_counter() - started
    return Proc(
        seconds,
        os.waitstatus_to_exitcode(status),
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        peak_anon / 1024,
        path.read_text(errors="replace"),
    )


def _anon_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def hstsync(*args: str) -> list[str]:
    return [PYTHON, "-m", "hstsync", *args, "--config", "config.toml"]


def tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:])


# -- 1: a program of 2,000 observations ------------------------------------------------------


def program(args: argparse.Namespace, scratch: Path, rows: list[str]) -> None:
    from hstsync.emulator import Catalogue

    made = Catalogue().add_jwst_program(
        PROGRAM, observations=args.observations, repeats=args.repeats
    )
    sizes = {p.data_uri: p.size for p in made}
    print(f"\n== program: {args.observations:,} JWST observations, {len(sizes):,} unique files")
    manifest = f'proposal_id = {PROGRAM}\n[criteria]\nobs_collection = "JWST"\n'
    served = ("--observations", str(args.observations), "--repeats", str(args.repeats))
    unpaced = ("--big", "0", "--rate", "0", "--latency", "0")

    plan_dir = fresh(scratch, "plan")
    emu = start_emulator(plan_dir, *served, *unpaced)
    try:
        env = hstsync_setup(emu.url, plan_dir, args.budget)
        (plan_dir / "p.toml").write_text(manifest)
        got = measured(hstsync("plan", "p.toml"), plan_dir, env)
    finally:
        lists = emu.stop()["lists"]
    if got.status != 0:
        raise ToolFailed(f"plan: exit {got.status}: {tail(got.log)}")
    rows.append(
        f"plan (resolution only), {len(sizes):,} files: {got.seconds:.1f} s, {got.cpu:.1f} "
        f"CPU s, peak RSS {got.rss_mib:.0f} MiB, anonymous {got.anon_mib:.0f} MiB; "
        f"{len(lists)} product lists of {min(lists)}-{max(lists)} obsids"
    )
    print("  " + rows[-1], flush=True)

    run_dir = fresh(scratch, "run")
    emu = start_emulator(run_dir, *served, *unpaced)
    try:
        env = hstsync_setup(emu.url, run_dir, args.budget)
        (run_dir / "requests" / "p.toml").write_text(manifest)
        got = measured(hstsync("run", "--once"), run_dir, env)
    finally:
        stats = emu.stop()
    files = sum(1 for p in (run_dir / "mirror" / "mastDownload").rglob("*") if p.is_file())
    gets = Counter(stats["gets"])
    if got.status != 0 or files != len(sizes) or gets != Counter(dict.fromkeys(sizes, 1)):
        raise ToolFailed(
            f"run --once: exit {got.status}, {files} files, {sum(gets.values())} file GETs "
            f"for {len(gets)} files: {tail(got.log)}"
        )
    rows.append(
        f"run --once, {len(sizes):,} files ({sum(sizes.values()) / 1e6:.0f} MB): "
        f"{got.seconds:.1f} s, {got.cpu:.1f} CPU s, peak RSS {got.rss_mib:.0f} MiB, "
        f"anonymous {got.anon_mib:.0f} MiB; each file asked for once "
        f"({sum(gets.values()):,} GETs)"
    )
    print("  " + rows[-1], flush=True)
    shutil.rmtree(plan_dir, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)


# -- 2: a 5 GB file against the floor --------------------------------------------------------


def big(args: argparse.Namespace, scratch: Path, rows: list[str]) -> None:
    size = args.big
    print(
        f"\n== big: one {size / 1e9:.2f} GB level-3 mosaic, {args.rate / 1e6:g} MB/s a "
        f"response, {args.latency * 1e3:g} ms latency, {args.budget} connections"
    )
    work = fresh(scratch, "big")
    emu = start_emulator(
        work,
        *("--big", str(size), "--observations", "0"),
        *("--rate", str(args.rate), "--latency", str(args.latency)),
    )
    env = hstsync_setup(emu.url, work, args.budget)
    (work / "requests" / "l3.toml").write_text(
        'proposal_id = 1345\n[criteria]\nobs_collection = "JWST"\n'
        f'[filters]\nproductFilename = "{L3}_i2d.fits"\n'
    )
    first: float | None = None
    last: float | None = None
    seen = 0
    done = threading.Event()

    def watch() -> None:  # first and last body byte, as the emulator counts them
        nonlocal first, last, seen
        while not done.is_set():
            total = emu.served()["total"]
            now = time.perf_counter()
            if total and first is None:
                first = now
            if total != seen:
                seen, last = total, now
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        got = measured(hstsync("run", "--once"), work, env)
    finally:
        done.set()
        watcher.join()
        stats = emu.stop()
    if got.status != 0:
        raise ToolFailed(f"run --once: exit {got.status}: {tail(got.log)}")
    path = work / "mirror" / "mastDownload" / "JWST" / L3 / f"{L3}_i2d.fits"
    digest = _sha256(path)
    expected = _expected_sha256(size)
    if digest != expected:
        raise ToolFailed("the mosaic is not the emulator's body")
    assert first is not None and last is not None
    transfer = last - first
    lanes = args.budget
    # from the first body byte: the latency before it is not in the transfer measured
    lower = floor_seconds([size], lanes, args.rate, 0.0)
    rows.append(
        f"{size / 1e9:.2f} GB mosaic: transfer {transfer:.1f} s / floor {lower:.1f} s = "
        f"{transfer / lower:.2f}x ({lanes} lanes at {args.rate / 1e6:g} MB/s, "
        f"{args.latency * 1e3:g} ms; {seen / 1e9:.2f} GB sent in "
        f"{sum(stats['gets'].values())} GETs)"
    )
    rows.append(
        f"  whole run --once {got.seconds:.1f} s, {got.cpu:.1f} CPU s, peak RSS "
        f"{got.rss_mib:.0f} MiB (the FITS check maps the file), anonymous "
        f"{got.anon_mib:.0f} MiB; SHA-256 identical"
    )
    print("  " + "\n  ".join(rows[-2:]), flush=True)
    shutil.rmtree(work, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_sha256(size: int) -> str:
    from hstsync.emulator import Catalogue, Emulator, add_jwst_program

    catalogue = Catalogue()
    add_jwst_program(catalogue, i2d_size=size)
    body = Emulator(catalogue).body_file(f"mast:JWST/product/{L3}_i2d.fits")
    digest = hashlib.sha256()
    for offset in range(0, size, 1 << 24):
        digest.update(body.read(offset, min(1 << 24, size - offset)))
    return digest.hexdigest()


# -- main ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores {cpu}, Python "
        f"{platform.python_version()}, load average {load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=",".join(SECTIONS))
    parser.add_argument("--observations", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big", type=int, default=BIG, help="bytes of the mosaic")
    parser.add_argument("--rate", type=float, default=20e6, help="bytes/s a response (big)")
    parser.add_argument("--latency", type=float, default=0.05, help="s before a response")
    parser.add_argument("--budget", type=int, default=16, help="hstsync connections (16)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch (a temp dir)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    print(f"machine: {machine()}")
    scratch = Path(tempfile.mkdtemp(prefix="hstsync-jwst-", dir=args.workdir))
    rows: list[str] = []
    failed = False
    try:
        for name in SECTIONS:
            if name in chosen:
                try:
                    globals()[name](args, scratch, rows)
                except ToolFailed as exc:
                    failed = True
                    rows.append(f"{name}: FAILED: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n== JWST figures ({machine()})")
    print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
