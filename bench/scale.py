"""Benchmark: issue #14's figures (programs of 100,000 files on a small machine), one table.

One command, ``python bench/scale.py`` (``--quick``: a tenth of the sizes), measures
against the bundled MAST emulator (``bench/_emustats.py``: the emulator as a process
plus a port telling how many file requests it received and when):

1. **memory**: peak RSS (``ru_maxrss`` from ``os.wait4`` on that process) of
   ``hstsync plan`` and of ``hstsync run --once`` on synthetic programs of 10,000 and
   100,000 products (tiny files of 2 FITS blocks, 5,760 B, so that the 100,000 downloads
   take minutes, not hours; unthrottled emulator), and the growth from 10k to 100k;
   ``run --once`` rows check that the emulator got exactly one file request per product
   and the mirror holds every file;
2. **no-change re-sync**: a second ``run --once`` in the 100k directory once all is
   done; the emulator must receive 0 file requests. Meanwhile a poller answers
   ``status`` every 0.2 s in-process (``Store.open_readonly`` + ``summaries`` +
   ``status_document`` + JSON, what the daemon's ``/status.json`` does) and every 2 s
   as a whole ``hstsync status --json`` process; the worst of each is reported;
3. **time to first byte**: the daemon (``hstsync run``) is started and ready, then a
   100k-product manifest is dropped (``.toml.tmp`` renamed); the time from the rename
   to the first file request the emulator sees; then SIGTERM;
4. **small files**: 700 files of 31,680 B (~32 kB) at 16 connections, unthrottled, the
   tools in turn for ``--repeat`` rounds: ``run --once`` CPU (user+sys of the whole
   process, user and kernel apart) per file, and above a 4-file run's CPU (start-up);
   the same for a bare aiohttp loop (the floor of a durable Python downloader) and for
   that loop checking and recording each file (the floor of the target's definition); the
   pass (its log's ``pass over … took``) and the daemon (manifest dropped -> request
   done) against aria2c (``-j 16 -x 1``) on the URL list (resolution not in aria2c's
   time), and each tool's file transfers as the emulator saw them; best of each;
5. **floor ratio**: the tutorial's 7291 selection (6 files, 50.18 MB) at 16 and 32
   connections, 4 MB/s per response, 50 ms latency: the transfer as the emulator saw it
   (first file request to last body byte) over ``floor_seconds``; best of ``--repeat``;
6. **status at 1M**: ``bench/status_scale.py``'s database and timing (``--keep DIR``
   reuses a built database).

Then the table: each figure, its target from issue #14, and whether it is met.
Usage: ``python bench/scale.py [--quick] [--repeat 3] [--only memory,ttfb,small,floor,status]
[--keep DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import status_scale
from _common import (
    PYTHON,
    TUTORIAL,
    LogLines,
    Run,
    ToolFailed,
    byte_compile_hstsync,
    emulator_errors,
    fits_size,
    floor_seconds,
    fresh,
    have_aria2c,
    hstsync_setup,
    resolve,
    run_aria2c,
    run_bare_aiohttp,
    run_hstsync,
    run_hstsync_daemon,
    stop,
    synthetic,
    tree_digest,
)

HERE = Path(__file__).resolve().parent
TINY = 2 * 2880
SMALL = fits_size(32e3)
SECTIONS = ("memory", "ttfb", "small", "floor", "status")


# -- the emulator with its counters ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Emu:
    url: str
    stats_url: str

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.stats_url + "/stats", timeout=30) as reply:
            return dict(json.load(reply))

    def reset(self) -> None:
        request = urllib.request.Request(self.stats_url + "/reset", data=b"", method="POST")
        urllib.request.urlopen(request, timeout=30).close()


@contextlib.contextmanager
def emulator(
    rate: float | None, latency: float, programs: Sequence[str], log: Path
) -> Iterator[Emu]:
    command = [PYTHON, str(HERE / "_emustats.py"), "--latency", str(latency)]
    if rate:
        command += ["--rate", str(rate)]
    for spec in programs:
        command += ["--program", spec]
    with log.open("ab") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"(http://\S+) stats (http://\S+)", line)
            if not match:
                raise SystemExit(f"emulator did not start: {line!r}")
            yield Emu(match[1], match[2])
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# -- processes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proc:
    seconds: float
    status: int
    rss_mb: float
    cpu: float
    log: str


def measured(command: Sequence[str], cwd: Path, env: dict[str, str]) -> Proc:
    """Run to completion: wall s, exit status, peak RSS (MB) and CPU s of that process."""
    started = time.perf_counter()
    path = cwd / f"{time.monotonic_ns()}.log"
    with path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    text = path.read_text(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return Proc(seconds, code, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, text)


def hstsync(*args: str) -> list[str]:
    return [PYTHON, "-m", "hstsync", *args, "--config", "config.toml"]


def tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:])


def mirrored(root: Path) -> tuple[int, int]:
    """Files and bytes under ``root`` (``.part`` files not counted)."""
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".part"):
                files += 1
                size += os.stat(os.path.join(dirpath, name)).st_size
    return files, size


def pass_seconds(log: str) -> float | None:
    found = re.findall(r"pass over \d+ requests? took ([\d.]+) s", log)
    return float(found[-1]) if found else None


# -- the table -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    label: str
    value: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, label: str, value: str, target: str = "", met: bool | None = None,
            note: str = "") -> None:  # fmt: skip
        row = Row(label, value, target, met, note)
        self.rows.append(row)
        verdict = {True: "met", False: "NOT met", None: ""}[met]
        print(f"  {label}: {value}  {target} {verdict} {note}".rstrip(), flush=True)

    def print(self) -> None:
        width = max(len(r.label) for r in self.rows)
        value = max(len(r.value) for r in self.rows)
        target = max(len(r.target) for r in self.rows)
        print(f"\n== issue #14 figures ({machine()})")
        print(f"{'figure':{width}}  {'value':>{value}}  {'target':{target}}  met")
        for r in self.rows:
            verdict = {True: "yes", False: "NO", None: "-"}[r.met]
            line = f"{r.label:{width}}  {r.value:>{value}}  {r.target:{target}}  {verdict}"
            print(f"{line}  {r.note}".rstrip())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024**2:.0f} GiB"
    day = datetime.date.today().isoformat()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{day}, {os.cpu_count()} cores {cpu}{mem}, Python {platform.python_version()}, "
        f"load average {load} now"
    )


# -- 1, 2: memory and the no-change re-sync --------------------------------------------------------

POLLER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from pathlib import Path
    from hstsync.service.daemon.status import status_document
    from hstsync.store.db import Store
    db, until, config = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    inner, whole, last_whole = [], [], 0.0
    while not until.exists():
        started = time.perf_counter()
        with Store.open_readonly(db) as store:
            json.dumps(status_document(store.summaries(None), None))
        inner.append(time.perf_counter() - started)
        if time.perf_counter() - last_whole >= 2.0:
            last_whole = started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hstsync", "status", "--json", "--config",
                            config], capture_output=True)
            whole.append(time.perf_counter() - started)
        time.sleep(0.2)
    print(json.dumps({"inner": inner, "whole": whole}))
    """
)


def memory(args: argparse.Namespace, scratch: Path, report: Report, log: Path) -> None:
    small_n, big_n = args.sizes
    programs = {n: synthetic(f"p{n}", f"{n} products", 95000 + i, n, TINY)
                for i, n in enumerate((small_n, big_n))}  # fmt: skip
    print(f"\n== memory: plan and run --once on {small_n:,} and {big_n:,} products of {TINY:,} B")
    rss: dict[tuple[str, int], float] = {}
    with emulator(None, 0.0, [p for w in programs.values() for p in w.programs], log) as emu:
        for n, workload in programs.items():
            work = fresh(scratch, f"plan{n}")
            env = hstsync_setup(emu.url, work, args.budget)
            (work / "p.toml").write_text(workload.manifest())
            got = measured(hstsync("plan", "p.toml"), work, env)
            if got.status != 0:
                raise ToolFailed(f"plan {n}: exit {got.status}: {tail(got.log)}")
            rss["plan", n] = got.rss_mb
            report.add(f"plan, {n:,} products: peak RSS", f"{got.rss_mb:.0f} MB",
                       "<= 250 MB" if n == big_n else "", got.rss_mb <= 250 if n == big_n else None,
                       f"({got.seconds:.1f} s, {got.cpu:.1f} CPU s)")  # fmt: skip
            shutil.rmtree(work, ignore_errors=True)

            work = fresh(scratch, f"run{n}")
            env = hstsync_setup(emu.url, work, args.budget)
            (work / "requests" / "p.toml").write_text(workload.manifest())
            emu.reset()
            got = measured(hstsync("run", "--once"), work, env)
            files, _ = mirrored(work / "mirror" / "mastDownload")
            requested = emu.stats()["files"]
            if got.status != 0 or files != n:
                raise ToolFailed(
                    f"run --once {n}: exit {got.status}, {files} files: {tail(got.log)}"
                )
            rss["run", n] = got.rss_mb
            report.add(f"run --once, {n:,} products: peak RSS", f"{got.rss_mb:.0f} MB",
                       "<= 250 MB" if n == big_n else "", got.rss_mb <= 250 if n == big_n else None,
                       f"({got.seconds:.1f} s, {got.cpu:.1f} CPU s = {got.cpu / n * 1e3:.2f} ms "
                       f"per file; {requested:,} file requests)")  # fmt: skip
            if n == big_n:
                resync(emu, work, env, n, report)
            shutil.rmtree(work, ignore_errors=True)
    for what in ("plan", "run"):
        growth = rss[what, big_n] / rss[what, small_n] - 1
        report.add(f"{what}: RSS growth {small_n // 1000}k -> {big_n // 1000}k", f"{growth:+.0%}",
                   "< +20 %", growth < 0.20)  # fmt: skip


def resync(emu: Emu, work: Path, env: dict[str, str], n: int, report: Report) -> None:
    (work / "poller.py").write_text(POLLER)
    until = work / "poller.stop"
    emu.reset()
    poller = subprocess.Popen(
        [PYTHON, "poller.py", str(work / "hstsync.db"), str(until), "config.toml"],
        cwd=work, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        got = measured(hstsync("run", "--once"), work, env)
    finally:
        until.touch()
        out, _ = poller.communicate(timeout=60)
    requested = emu.stats()["files"]
    if got.status != 0:
        raise ToolFailed(f"re-sync: exit {got.status}: {tail(got.log)}")
    report.add(f"no-change re-sync, {n:,} products", f"{got.seconds:.1f} s", "<= 30 s",
               got.seconds <= 30,
               f"({got.cpu:.1f} CPU s, {got.rss_mb:.0f} MB peak RSS)")  # fmt: skip
    report.add("re-sync: file requests sent", f"{requested}", "0", requested == 0)
    polls = json.loads(out or "{}")
    inner, whole = polls.get("inner", []), polls.get("whole", [])
    if inner:
        worst, median = max(inner), statistics.median(inner)
        report.add("status during re-sync, in-process", f"{worst * 1e3:.0f} ms",
                   "<= 100 ms", worst <= 0.1,
                   f"(worst of {len(inner)}; median {median * 1e3:.0f} ms)")  # fmt: skip
    if whole:
        report.add("status during re-sync, whole process", f"{max(whole) * 1e3:.0f} ms", "", None,
                   f"(worst of {len(whole)}; interpreter start included)")  # fmt: skip


# -- 3: time to first byte -------------------------------------------------------------------------


def ttfb(args: argparse.Namespace, scratch: Path, report: Report, log: Path) -> None:
    n = args.sizes[1]
    workload = synthetic("ttfb", f"{n} products", 95100, n, TINY)
    print(f"\n== time to first byte: the daemon, a {n:,}-product manifest dropped")
    with emulator(None, 0.0, workload.programs, log) as emu:
        work = fresh(scratch, "ttfb")
        env = hstsync_setup(emu.url, work, args.budget)
        proc = subprocess.Popen(
            [PYTHON, "-m", "hstsync", "run", "--config", "config.toml"], cwd=work, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        )  # fmt: skip
        assert proc.stdout is not None
        lines = LogLines(proc.stdout)
        first: float | None = None
        try:
            lines.wait_for(["watching "], 60)
            time.sleep(1.0)
            emu.reset()
            tmp, manifest = work / "requests" / "big.toml.tmp", work / "requests" / "big.toml"
            tmp.write_text(workload.manifest())
            dropped = time.monotonic()
            os.rename(tmp, manifest)
            deadline = dropped + args.ttfb_timeout
            while time.monotonic() < deadline and proc.poll() is None:
                first = emu.stats()["first_file"]
                if first is not None:
                    break
                time.sleep(0.02)
        finally:
            status = stop(proc, 30)
            lines.join(5)
            proc.stdout.close()
        shutil.rmtree(work, ignore_errors=True)
    if first is None:
        report.add(f"time to first byte, {n:,} products", f"> {args.ttfb_timeout:.0f} s",
                   "<= 5 s", False,
                   f"(daemon exit {status}: {' | '.join(lines.tail)})")  # fmt: skip
        return
    seconds = first - dropped
    report.add(f"time to first byte, {n:,} products", f"{seconds:.1f} s", "<= 5 s", seconds <= 5,
               "(manifest rename -> first file request at the emulator)")  # fmt: skip


# -- 4: small files, CPU and aria2c ----------------------------------------------------------------


def small(args: argparse.Namespace, scratch: Path, report: Report, log: Path) -> None:
    n = 700
    many = synthetic("small", f"{n} small files", 95200, n, SMALL)
    few = synthetic("few", "4 small files", 95201, 4, SMALL)
    print(f"\n== small files: {n} × {SMALL:,} B, {args.budget} connections, unthrottled")
    with emulator(None, 0.0, many.programs + few.programs, log) as emu:
        resolved = resolve(emu.url, many, fresh(scratch, "resolve"))
        resolved_few = resolve(emu.url, few, fresh(scratch, "resolve-few"))
        once: list[Small] = []
        base: list[Run] = []
        daemon: list[Run] = []
        bare: list[Run] = []
        bare_few: list[Run] = []
        mirror: list[Run] = []
        mirror_few: list[Run] = []
        aria: list[Small] = []
        for _ in range(args.repeat):  # the tools in turn, so a slow minute hits them all
            work = fresh(scratch, "run")
            emu.reset()
            run = run_hstsync(emu.url, many, work, args.budget)
            if tree_digest(run.root) != resolved.digest:
                raise ToolFailed("hstsync wrote the wrong bytes")
            text = "".join(p.read_text(errors="replace") for p in work.glob("*.log"))
            once.append(Small(run, pass_seconds(text), span(emu)))
            shutil.rmtree(work, ignore_errors=True)
            work = fresh(scratch, "few")
            base.append(run_hstsync(emu.url, few, work, args.budget))
            shutil.rmtree(work, ignore_errors=True)
            work = fresh(scratch, "daemon")
            run = run_hstsync_daemon(emu.url, many, work, args.budget)
            if tree_digest(run.root) != resolved.digest:
                raise ToolFailed("the hstsync daemon wrote the wrong bytes")
            daemon.append(run)
            shutil.rmtree(work, ignore_errors=True)
            work = fresh(scratch, "bare")
            run = run_bare_aiohttp(resolved, work, args.budget)
            if tree_digest(run.root) != resolved.digest:
                raise ToolFailed("the bare aiohttp loop wrote the wrong bytes")
            bare.append(run)
            shutil.rmtree(work, ignore_errors=True)
            work = fresh(scratch, "bare-few")
            bare_few.append(run_bare_aiohttp(resolved_few, work, args.budget))
            shutil.rmtree(work, ignore_errors=True)
            for runs, done, want in ((mirror, resolved, n), (mirror_few, resolved_few, 4)):
                work = fresh(scratch, "bare-mirror")
                run = run_bare_aiohttp(done, work, args.budget, mirror=True)
                if tree_digest(run.root) != done.digest or recorded_done(work) != want:
                    raise ToolFailed("the bare loop with records wrote the wrong bytes or rows")
                runs.append(run)
                shutil.rmtree(work, ignore_errors=True)
            if have_aria2c():
                work = fresh(scratch, "aria2c")
                emu.reset()
                run = run_aria2c(resolved, work, args.budget, 1)
                if tree_digest(run.root) != resolved.digest:
                    raise ToolFailed("aria2c wrote the wrong bytes")
                aria.append(Small(run, None, span(emu)))
                shutil.rmtree(work, ignore_errors=True)
    best = min(once, key=lambda r: r.run.cpu).run
    few_best = min(base, key=lambda r: r.cpu)
    bare_best = min(bare, key=lambda r: r.cpu)
    per_file = best.cpu / n * 1e3
    report.add(f"CPU per small file ({n} × {SMALL // 1000} kB)", f"{per_file:.2f} ms", "<= 1 ms",
               per_file <= 1.0,
               f"(whole process, {best.cpu:.2f} CPU s / {n}: user {best.user / n * 1e3:.2f} + "
               f"kernel {(best.cpu - best.user) / n * 1e3:.2f} ms)")  # fmt: skip
    above = (best.cpu - few_best.cpu) / (n - 4) * 1e3
    above_user = (best.user - few_best.user) / (n - 4) * 1e3
    report.add("  above a 4-file run (start-up out)", f"{above:.2f} ms", "<= 1 ms", above <= 1.0,
               f"(user {above_user:.2f} + kernel {above - above_user:.2f} ms)")  # fmt: skip
    report.add("  bare aiohttp loop, same URL list", f"{bare_best.cpu / n * 1e3:.2f} ms", "", None,
               f"(whole process: user {bare_best.user / n * 1e3:.2f} + kernel "
               f"{(bare_best.cpu - bare_best.user) / n * 1e3:.2f} ms; GET, write, fsync, "
               "rename, fsync dir; no checks, no records)")  # fmt: skip
    bare_few_best = min(bare_few, key=lambda r: r.cpu)
    bare_above = (bare_best.cpu - bare_few_best.cpu) / (n - 4) * 1e3
    bare_above_user = (bare_best.user - bare_few_best.user) / (n - 4) * 1e3
    report.add("    above its 4-file run", f"{bare_above:.2f} ms", "", None,
               f"(user {bare_above_user:.2f} + kernel {bare_above - bare_above_user:.2f} ms: "
               "the least a Python downloader that makes files durable pays)")  # fmt: skip
    mirror_best = min(mirror, key=lambda r: r.cpu)
    mirror_few_best = min(mirror_few, key=lambda r: r.cpu)
    mirror_above = (mirror_best.cpu - mirror_few_best.cpu) / (n - 4) * 1e3
    report.add("  bare loop + FITS check + records", f"{mirror_best.cpu / n * 1e3:.2f} ms", "",
               None, f"(whole process; above its 4-file run {mirror_above:.2f} ms: the same loop, "
               "each row recorded first, each file's sums checked, done marked once "
               "durable, 64 marks a transaction)")  # fmt: skip
    fastest = min(once, key=lambda r: r.run.seconds)
    passed = min((r.passed for r in once if r.passed is not None), default=None)
    report.add(f"hstsync run --once, {n} small files", f"{fastest.run.seconds:.2f} s", "", None,
               f"(whole process; its pass {passed if passed is not None else '?'} s, of which "
               f"file transfers {min(r.span for r in once):.2f} s)")  # fmt: skip
    d_seconds = min(r.seconds for r in daemon)
    report.add(f"hstsync daemon, {n} small files", f"{d_seconds:.2f} s", "", None,
               "(manifest dropped -> request done, astroquery already loaded)")  # fmt: skip
    b_seconds = min(r.seconds for r in bare)
    report.add("bare aiohttp loop, same URL list", f"{b_seconds:.2f} s", "", None,
               "(whole process)")  # fmt: skip
    if not aria:
        report.add(
            "aria2c, same files", "-", "", None, "(aria2c not installed: apt-get install aria2)"
        )
        return
    a_seconds = min(r.run.seconds for r in aria)
    a_span = min(r.span for r in aria)
    report.add(f"aria2c -j {args.budget} -x 1, same URL list", f"{a_seconds:.2f} s", "", None,
               f"(whole process, {min(r.run.cpu for r in aria):.2f} CPU s, no fsync; resolution "
               f"not included; file transfers {a_span:.2f} s)")  # fmt: skip
    ratio = d_seconds / a_seconds
    report.add("hstsync daemon pass / aria2c", f"{ratio:.2f}x", "<= 1.1x", ratio <= 1.1,
               "(resolution included in hstsync's, not in aria2c's)")  # fmt: skip
    if passed is not None:
        ratio = passed / a_seconds
        report.add("hstsync run --once pass / aria2c", f"{ratio:.2f}x", "<= 1.1x", ratio <= 1.1,
                   "(its pass loads astroquery first)")  # fmt: skip
        # aria2c is handed the URL list; the pass makes it (astroquery's import, the
        # observation query, the first product list) before its first file request
        with_r = passed / (a_seconds + resolved.seconds)
        report.add("  / (aria2c + resolution)", f"{with_r:.2f}x", "", None,
                   f"(resolving the URL list with astroquery, its own process: "
                   f"{resolved.seconds:.2f} s)")  # fmt: skip
    ratio = min(r.span for r in once) / a_span
    report.add("hstsync file transfers / aria2c's", f"{ratio:.2f}x", "", None,
               "(first file request -> last byte, as the emulator saw each)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Small:
    run: Run
    #: the pass's own time, from its log (None: no such line)
    passed: float | None
    #: first file request -> last body byte, as the emulator saw the run
    span: float


def recorded_done(work: Path) -> int:
    """Rows the bare loop with records marked done."""
    with contextlib.closing(sqlite3.connect(work / "bare.db")) as db:
        return int(db.execute("SELECT count(*) FROM products WHERE state = 'done'").fetchone()[0])


def span(emu: Emu) -> float:
    stats = emu.stats()
    if stats["first_file"] is None or stats["last_byte"] is None:
        raise ToolFailed("the emulator saw no file transfer")
    return float(stats["last_byte"] - stats["first_file"])


# -- 5: floor ratios -------------------------------------------------------------------------------


def floor(args: argparse.Namespace, scratch: Path, report: Report, log: Path) -> None:
    rate, latency = 4e6, 0.05
    print(f"\n== floor: the tutorial's selection, {rate / 1e6:g} MB/s per response, "
          f"{latency * 1e3:g} ms latency")  # fmt: skip
    with emulator(rate, latency, (), log) as emu:
        resolved = resolve(emu.url, TUTORIAL, fresh(scratch, "resolve"))
        sizes = [int(p["size"]) for p in resolved.products]
        for budget in (16, 32):
            best: tuple[float, float] | None = None
            for _ in range(args.repeat):
                work = fresh(scratch, "run")
                emu.reset()
                run = run_hstsync(emu.url, TUTORIAL, work, budget)
                stats = emu.stats()
                if tree_digest(run.root) != resolved.digest:
                    raise ToolFailed("hstsync wrote the wrong bytes")
                transfer = stats["last_byte"] - stats["first_file"]
                if best is None or transfer < best[0]:
                    best = (transfer, run.seconds)
                shutil.rmtree(work, ignore_errors=True)
            assert best is not None
            lower = floor_seconds(sizes, budget, rate, latency)
            ratio = best[0] / lower
            report.add(f"transfer / floor, 7291 at {budget} connections", f"{ratio:.2f}x",
                       "<= 1.2x", ratio <= 1.2,
                       f"(transfer {best[0]:.2f} s, floor {lower:.2f} s, "
                       f"whole run --once {best[1]:.2f} s)")  # fmt: skip


# -- 6: status on 1M -------------------------------------------------------------------------------


def status(args: argparse.Namespace, scratch: Path, report: Report, log: Path) -> None:
    n = args.status_products
    print(f"\n== status on {n:,} products")
    root = args.keep or fresh(scratch, "status")
    root.mkdir(parents=True, exist_ok=True)
    db = root / "hstsync.db"
    if status_scale.count(db) != n:
        db.unlink(missing_ok=True)
        built = status_scale.build(db, n, 50)
        print(f"  built {n:,} products in {built:.0f} s")
    config = root / "config.toml"
    config.write_text(
        f'[paths]\nrequests = "{root / "requests"}"\nmirror = "{root / "mirror"}"\n'
        f'database = "{db}"\n'
    )
    base = [PYTHON, "-m", "hstsync", "status", "--config", str(config)]
    start, _ = status_scale.best_of([PYTHON, "-m", "hstsync", "--version"], args.repeat)
    for label, command in (("status", base), ("status --json", [*base, "--json"])):
        seconds, _ = status_scale.best_of(command, args.repeat)
        report.add(f"{label}, {n:,} products", f"{seconds * 1e3:.0f} ms", "<= 100 ms",
                   seconds <= 0.1,
                   f"(whole process; `hstsync --version` alone {start * 1e3:.0f} ms)")  # fmt: skip


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1k/10k products, status on 100k, best of 1 (a few minutes)",
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=",".join(SECTIONS))
    parser.add_argument("--repeat", type=int, default=None, help="best of N (3; quick 1)")
    parser.add_argument("--budget", type=int, default=16, help="hstsync connections (16)")
    parser.add_argument("--ttfb-timeout", type=float, default=300.0)
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="directory for the status database (built once, reused)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="scratch (a temp dir)")
    args = parser.parse_args(argv)  # fmt: skip
    args.sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    args.status_products = 100_000 if args.quick else 1_000_000
    args.repeat = args.repeat or (1 if args.quick else 3)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(chosen) - set(SECTIONS):
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    print(f"machine: {machine()}")
    byte_compile_hstsync()
    report = Report()
    scratch = Path(tempfile.mkdtemp(prefix="hstsync-scale-", dir=args.workdir))
    log = scratch / "emulator.log"
    failed = False
    started = time.perf_counter()
    try:
        for name in SECTIONS:
            if name not in chosen:
                continue
            t0 = time.perf_counter()
            try:
                globals()[name](args, scratch, report, log)
            except ToolFailed as exc:
                failed = True
                report.add(f"{name}: FAILED", "-", "", False, str(exc))
            load = "/".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"  ({name}: {time.perf_counter() - t0:.0f} s; load average {load})", flush=True)
        if report.rows:
            report.print()
        print(f"(all: {time.perf_counter() - started:.0f} s)")
        if errors := emulator_errors(log):
            print(f"note: {errors}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
