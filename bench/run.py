"""Benchmark: hstsync against astroquery, aria2c and parfive on the same emulator workloads.

One command (``python bench/run.py``) that:

1. starts the bundled MAST emulator in its own process with a per-connection speed
   limit (``--rate``, default 4 MB/s per response) and first-byte latency
   (``--latency``, default 50 ms), serving three workloads: the tutorial's proposal
   7291 selection (6 files, 50.18 MB), many small files (260 × 83,520 B) and a few
   large ones (3 × 300 MB);
2. times each tool as a whole process in a fresh directory, best of ``--repeat``,
   at an equal connection budget (``--budget``, default 16 connections at once):

   - ``astroquery``: the tutorial's steps, ``Observations.download_products`` — one
     connection, one file after another (not configurable);
   - ``hstsync``: ``hstsync run --once``; ``[download] concurrency`` = budget, and
     ``connections``/``per_host`` = budget when the installed hstsync has them;
   - ``hstsync daemon``: the same configuration, ``hstsync run`` started (untimed) and
     ready; timed from dropping the manifest (``.toml.tmp``, renamed) to the request's
     ``done`` line in its log;
   - ``aria2c`` and ``parfive``, each in three shapes of the same budget B: whole
     files (``-j B -x 1`` / ``max_conn=B max_splits=1``), S splits (``-j B/S -x S
     -s S`` / ``max_conn=B/S max_splits=S``, S = ``--splits``, 4) and one file at a
     time over B connections (``-j 1 -x B -s B``; aria2c caps ``-x`` at 16); the
     summary keeps each tool's best shape, per workload;

   - with ``--baseline PYTHON``, the hstsync installed for that interpreter (an
     earlier commit in a venv of its own) the same two ways, in the same run: columns
     ``b.once`` and ``b.daemon``, so a change is measured before/after on one machine
     at one moment;

   aria2c and parfive are given the URL list; resolving it (astroquery, as its own
   process) is timed once per workload and printed, NOT included in their times.
   astroquery and hstsync resolve inside their timed run;
3. checks that every tool wrote exactly the emulator's bytes, at astroquery's paths;
4. prints, per workload, seconds and the ratio to the best non-hstsync tool, and a
   computed floor (:func:`_common.floor_seconds`: the transfer alone over the budget's
   connections at this rate and latency), then a summary, then CPU seconds per GB of
   each tool on an unthrottled loopback transfer
   (``resource.getrusage(RUSAGE_CHILDREN)`` deltas; the CPU of a run of as many tiny
   files is subtracted, so start-up and resolution do not count).

A run that cannot matter is skipped with a note, from a lower bound on its time
(each file costs a first byte and its bytes at the per-connection rate times its
connections per file; its files-at-once lanes share that work): any tool over
``--skip-over`` seconds (astroquery on the large files: 900 MB at 4 MB/s is ≥ 225 s),
and an aria2c or parfive shape over 1.5 × the best time another tool has already
shown. hstsync is never skipped. Tools that are not installed are skipped with a
note. ``--quick`` shrinks the synthetic workloads (< 1 min).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from _common import (
    PYTHON,
    TUTORIAL,
    Resolved,
    Run,
    ToolFailed,
    Workload,
    byte_compile_hstsync,
    emulator,
    emulator_errors,
    fits_size,
    floor_seconds,
    fresh,
    have_aria2c,
    have_parfive,
    hstsync_budget,
    mb,
    resolve,
    run_aria2c,
    run_astroquery,
    run_hstsync,
    run_hstsync_daemon,
    run_parfive,
    synthetic,
    tree_digest,
)

TOOLS = ("hstsync", "aria2c", "parfive", "astroquery")
#: The summary's time columns: (key, header); a contender's key is its ``column``.
COLUMNS = (
    ("once", "once"),
    ("daemon", "daemon"),
    ("b.once", "b.once"),
    ("b.daemon", "b.daemon"),
    ("aria2c", "aria2c"),
    ("parfive", "parfive"),
    ("astroquery", "astroq"),
)
INSTALLED: dict[str, Callable[[], bool]] = {
    "hstsync": lambda: True,
    "aria2c": have_aria2c,
    "parfive": have_parfive,
    "astroquery": lambda: True,
}


def workloads(quick: bool) -> list[Workload]:
    small_n, large_n, large_size = (60, 3, 24e6) if quick else (260, 3, 300e6)
    small_size, large = fits_size(82_308), fits_size(large_size)
    return [
        TUTORIAL,
        synthetic("small", f"many small files, {small_n} × {small_size:,} B", 90001, small_n,
                  small_size),
        synthetic("large", f"a few large files, {large_n} × {mb(large)}", 90002, large_n, large),
    ]  # fmt: skip


@dataclass(slots=True)
class Contender:
    """One tool in one configuration."""

    tool: str
    label: str
    budget: str
    files: int  # files at once
    splits: int  # connections per file
    run: Callable[[Path], Run]
    times: list[float] = field(default_factory=list)
    note: str = ""
    #: its column in the summary; the tool's name when empty
    summary: str = ""

    @property
    def column(self) -> str:
        return self.summary or self.tool

    def bound(self, resolved: Resolved, rate: float | None, latency: float) -> float:
        """Seconds it needs at least: each file costs a first byte and its bytes at
        ``splits`` × ``rate``, and ``files`` lanes share the work."""
        if not rate or not resolved.products:
            return 0.0
        biggest = max(int(p["size"]) for p in resolved.products)
        work = len(resolved.products) * latency + resolved.bytes / (self.splits * rate)
        return max(latency + biggest / (self.splits * rate), work / self.files)

    @property
    def best(self) -> float | None:
        return min(self.times) if self.times else None


def shapes(budget: int, splits: int) -> list[tuple[str, int, int]]:
    """(name, files at once, connections per file) using at most ``budget`` connections."""
    wide = min(budget, 16)  # aria2c takes at most -x 16
    return [
        ("whole files", budget, 1),
        (f"{splits} splits", max(1, budget // splits), splits),
        (f"1 file × {wide}", 1, wide),
    ]


def contenders(
    args: argparse.Namespace, server: str, workload: Workload, resolved: Resolved
) -> list[Contender]:
    b = args.budget
    hstsync_cfg = " ".join(f"{k}={v}" for k, v in hstsync_budget(b).items())
    # (interpreter, label, summary column prefix): this hstsync, and --baseline's
    installed = [(PYTHON, "hstsync", "")]
    if args.baseline:
        installed.append((args.baseline, "baseline", "b."))
    out = []
    for python, name, prefix in installed:
        out += [
            Contender(
                "hstsync", f"{name} run --once", hstsync_cfg, b, 1,
                partial(run_hstsync, server, workload, budget=b, python=python),
                summary=f"{prefix}once",
            ),
            Contender(
                "hstsync", f"{name} daemon (drop → done)", hstsync_cfg, b, 1,
                partial(run_hstsync_daemon, server, workload, budget=b, python=python),
                summary=f"{prefix}daemon",
            ),
        ]  # fmt: skip
    for name, files, splits in shapes(b, args.splits):
        if have_aria2c():
            out.append(
                Contender(
                    "aria2c", f"aria2c ({name})", f"-j {files} -x {splits} -s {splits} -k 1M",
                    files, splits, partial(run_aria2c, resolved, files=files, splits=splits),
                )
            )  # fmt: skip
        if have_parfive():
            out.append(
                Contender(
                    "parfive", f"parfive ({name})", f"max_conn={files} max_splits={splits}",
                    files, splits, partial(run_parfive, resolved, files=files, splits=splits),
                )
            )  # fmt: skip
    out.append(
        Contender(
            "astroquery", "astroquery download_products", "1 (sequential; fixed)", 1, 1,
            lambda w: run_astroquery(server, workload, w),
        )
    )  # fmt: skip
    return [c for c in out if c.tool in args.tools]


@dataclass(frozen=True, slots=True)
class Measured:
    """One workload's results: its product list, every contender, the computed floor."""

    workload: Workload
    resolved: Resolved
    entries: list[Contender]
    floor: float | None  # None without a rate limit


def floor_of(args: argparse.Namespace, resolved: Resolved) -> float | None:
    """The transfer-only lower bound at this budget, rate and latency (no rate: none)."""
    if not args.rate:
        return None
    sizes = [int(p["size"]) for p in resolved.products]
    return floor_seconds(sizes, args.budget, args.rate, args.latency)


def measure(
    args: argparse.Namespace, server: str, workload: Workload, scratch: Path
) -> tuple[Resolved, list[Contender], bool]:
    """Run every contender on ``workload``; False when some tool wrote the wrong bytes
    or hstsync failed."""
    resolved = resolve(server, workload, fresh(scratch, "resolve"))
    entries = contenders(args, server, workload, resolved)
    ok = True
    for _ in range(args.repeat):
        for c in entries:
            if c.note or (c.tool != "hstsync" and skip(args, c, resolved, entries)):
                continue
            work = fresh(scratch, "run")
            try:
                run = c.run(work)
                got = tree_digest(run.root)
                if got != resolved.digest:
                    ok = False
                    c.note = f"WRONG BYTES: tree {got}, emulator {resolved.digest}"
                    continue
                c.times.append(run.seconds)
            except ToolFailed as exc:
                c.note = f"FAILED: {exc}"
                ok = c.tool != "hstsync" and ok
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return resolved, entries, ok


def skip(
    args: argparse.Namespace, c: Contender, resolved: Resolved, entries: list[Contender]
) -> bool:
    """Whether ``c`` cannot matter: over ``--skip-over`` s, or (aria2c, parfive) over
    1.5 × the best time another tool has already shown. Sets its note."""
    if c.times:
        return False
    bound = c.bound(resolved, args.rate, args.latency)
    if bound > args.skip_over:
        c.note = f"skipped: needs ≥ {bound:.0f} s at this limit and latency"
    elif c.tool != "astroquery" and (base := best_other(entries)) and bound > 1.5 * base:
        c.note = f"skipped: needs ≥ {bound:.1f} s, over 1.5 × the best shown"
    return bool(c.note)


def best_other(entries: list[Contender]) -> float | None:
    times = [c.best for c in entries if c.tool != "hstsync" and c.best is not None]
    return min(times) if times else None


def print_workload(m: Measured, args: argparse.Namespace) -> None:
    resolved, entries = m.resolved, m.entries
    n = len(resolved.products)
    print(f"\n== {m.workload.title}: {n} files, {mb(resolved.bytes)}")
    base = best_other(entries)
    print(f"{'tool':30} {'connection budget':42} {'seconds':>8} {'ratio':>6}")
    for c in entries:
        if c.best is None:
            print(f"{c.label:30} {c.budget:42} {'-':>8} {'':>6}  {c.note}")
            continue
        ratio = f"{c.best / base:6.2f}" if base else f"{'-':>6}"
        print(f"{c.label:30} {c.budget:42} {c.best:8.2f} {ratio}  {c.note}".rstrip())
    if m.floor is not None:
        lanes = f"{args.budget} × {args.rate / 1e6:g} MB/s, {args.latency * 1000:g} ms/request"
        ratio = f"{m.floor / base:6.2f}" if base else f"{'-':>6}"
        print(f"{'floor: lower bound (computed)':30} {lanes:42} {m.floor:8.2f} {ratio}")
    notes = ["ratio: to the best non-hstsync time"]
    if any(c.tool in ("aria2c", "parfive") for c in entries):
        notes.insert(
            0,
            f"aria2c and parfive start from the URL list; resolving it took "
            f"{resolved.seconds:.2f} s as its own process and is not in their times",
        )
    if any(c.column == "daemon" for c in entries):
        notes.append(
            "hstsync daemon: started and ready beforehand (not timed); timed from the "
            "manifest's rename into requests/ to the request's 'done' log line"
        )
    if m.floor is not None:
        notes.append(
            "floor: not a run; the transfer alone over the budget's connections, each at the "
            "emulator's rate after its latency per request, files ≥ 2 MiB split perfectly, "
            "smaller ones placed whole, largest first"
        )
    print("\n".join(f"({note})" for note in notes))


def print_summary(results: list[Measured]) -> None:
    columns = [
        (key, head)
        for key, head in COLUMNS
        if any(c.column == key for m in results for c in m.entries)
    ]
    mine = [key for key in ("once", "daemon", "b.once", "b.daemon") if key in dict(columns)]
    ratios = ((9, "/B"), (11, "/B+r"))
    print("\n== summary: seconds, best configuration of each tool within the budget")
    widths = {key: max(8, len(title) + 1) for key, title in columns}
    head = f"{'workload':9}" + "".join(f"{h:>{widths[k]}}" for k, h in columns) + f"{'floor':>8}"
    head += "".join(
        f"{key + suffix:>{max(width, len(key + suffix) + 1)}}"
        for width, suffix in ratios
        for key in mine
    )
    print(head)
    for m in results:
        row = f"{m.workload.key:9}"
        best: dict[str, float] = {}
        for key, _ in columns:
            times = [c.best for c in m.entries if c.column == key and c.best is not None]
            if times:
                best[key] = min(times)
            w = widths[key]
            row += f"{best[key]:{w}.2f}" if key in best else f"{'-':>{w}}"
        row += f"{m.floor:8.2f}" if m.floor is not None else f"{'-':>8}"
        base = best_other(m.entries)
        # the same comparison with resolution added to the tools that were handed URLs
        fair = [
            c.best + (m.resolved.seconds if c.tool in ("aria2c", "parfive") else 0.0)
            for c in m.entries
            if c.tool != "hstsync" and c.best is not None
        ]
        for (width, suffix), other in zip(ratios, (base, min(fair, default=None)), strict=True):
            for key in mine:
                value = best.get(key)
                w = max(width, len(key + suffix) + 1)
                row += f"{value / other:{w}.2f}" if value and other else f"{'-':>{w}}"
        print(row)
    print(
        "(once: hstsync run --once, the whole process; daemon: hstsync's daemon, already "
        "running, from the manifest's drop to its request's 'done'; b.: the same for "
        "--baseline's hstsync)\n"
        "(floor: the computed lower bound for the transfer alone at this budget, rate and "
        "latency; not a run)\n"
        "(X/B: X's time over the best time of aria2c, parfive and astroquery; X/B+r: the same "
        "with the resolution time added to aria2c and parfive, which were handed the URL list)"
    )


# -- CPU per GB ------------------------------------------------------------------------------


def cpu_per_gb(args: argparse.Namespace, scratch: Path, log: Path) -> None:
    files, size = 4, fits_size(50e6 if args.quick else 250e6)
    big = synthetic("cpu", "cpu", 90003, files, size)
    tiny = synthetic("tiny", "tiny", 90004, files, 2 * 2880)
    print(
        f"\n== CPU on an unthrottled loopback transfer ({files} × {mb(size)}; no rate limit, "
        f"no latency; budget {args.budget})"
    )
    with emulator(None, 0.0, big.programs + tiny.programs, log) as server:
        sets = {w.key: resolve(server, w, fresh(scratch, "resolve")) for w in (big, tiny)}
        gb = (sets["cpu"].bytes - sets["tiny"].bytes) / 1e9
        print(f"{'tool':30} {'seconds':>8} {'MB/s':>7} {'CPU s':>7} {'CPU s/GB':>9}")
        for tool in args.tools:
            if tool == "astroquery":
                continue  # one connection at a time; its CPU tells nothing about ours
            if not INSTALLED[tool]():
                continue
            runs: dict[str, list[Run]] = {"cpu": [], "tiny": []}
            try:
                for _ in range(max(2, args.repeat)):  # CPU on 2 busy cores is noisy
                    for w in (big, tiny):
                        work = fresh(scratch, "run")
                        run = cpu_run(tool, server, w, sets[w.key], work, args.budget)
                        if tree_digest(run.root) != sets[w.key].digest:
                            raise ToolFailed("wrong bytes")
                        runs[w.key].append(run)
                        shutil.rmtree(work, ignore_errors=True)
            except ToolFailed as exc:
                print(f"{tool:30} FAILED: {exc}")
                continue
            fast = min(runs["cpu"], key=lambda r: r.seconds)
            cpu = min(r.cpu for r in runs["cpu"])
            marginal = (cpu - min(r.cpu for r in runs["tiny"])) / gb
            speed = sets["cpu"].bytes / fast.seconds / 1e6
            print(f"{tool:30} {fast.seconds:8.2f} {speed:7.0f} {cpu:7.2f} {marginal:9.2f}")
    print(
        "(seconds and CPU s: the whole process; CPU s/GB: CPU above that of a run of "
        f"{files} tiny files, per GB — start-up and resolution excluded. "
        "aria2c/parfive use whole-file configurations)"
    )


def cpu_run(
    tool: str, server: str, workload: Workload, resolved: Resolved, work: Path, budget: int
) -> Run:
    if tool == "hstsync":
        return run_hstsync(server, workload, work, budget)
    if tool == "aria2c":
        return run_aria2c(resolved, work, budget, 1)
    return run_parfive(resolved, work, budget, 1)


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4e6, help="bytes/s per connection (4e6)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds to first byte (0.05)")
    parser.add_argument("--budget", type=int, default=16, help="connections at once, every tool")
    parser.add_argument("--splits", type=int, default=4, help="connections per file, split runs")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool (best kept)")
    parser.add_argument("--quick", action="store_true", help="small synthetic workloads (< 1 min)")
    parser.add_argument(
        "--skip-over",
        type=float,
        default=None,
        help="skip non-hstsync runs that cannot finish under this many seconds (30; quick: 5)",
    )
    parser.add_argument(
        "--workloads", default="7291,small,large", help="comma-separated: 7291,small,large"
    )
    parser.add_argument(
        "--tools", default=",".join(TOOLS), help=f"comma-separated: {','.join(TOOLS)}"
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="PYTHON",
        help="also time the hstsync installed for this interpreter (an earlier commit's venv)",
    )
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU-per-GB measurement")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (a temp dir)")
    args = parser.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if args.skip_over is None:
        args.skip_over = 5.0 if args.quick else 30.0
    if unknown := set(args.tools) - set(TOOLS):
        parser.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    chosen = [w for w in workloads(args.quick) if w.key in args.workloads.split(",")]

    if "aria2c" in args.tools and not have_aria2c():
        print("note: aria2c is not installed (apt-get install aria2): skipped")
    if "parfive" in args.tools and not have_parfive():
        print("note: parfive is not installed (pip install parfive): skipped")
    print(
        f"emulator: {args.rate / 1e6:g} MB/s per connection, {args.latency * 1000:g} ms to "
        f"first byte; connection budget {args.budget} for every tool that can be limited; "
        f"best of {args.repeat}"
    )

    for python in (PYTHON, *([args.baseline] if args.baseline else [])):
        byte_compile_hstsync(python)
    ok = True
    results: list[Measured] = []
    scratch = Path(tempfile.mkdtemp(prefix="hstsync-bench-", dir=args.workdir))
    try:
        programs = tuple(p for w in chosen for p in w.programs)
        log = scratch / "emulator.log"
        with emulator(args.rate, args.latency, programs, log) as server:
            for workload in chosen:
                resolved, entries, good = measure(args, server, workload, scratch)
                ok = ok and good
                measured = Measured(workload, resolved, entries, floor_of(args, resolved))
                print_workload(measured, args)
                results.append(measured)
        if len(results) > 1:
            print_summary(results)
        if not args.no_cpu:
            cpu_per_gb(args, scratch, log)
        if errors := emulator_errors(log):
            print(f"\nnote: {errors}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not ok:
        print("\nsome tool wrote different bytes from the emulator's, or hstsync failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
