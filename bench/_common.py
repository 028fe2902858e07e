"""What the benchmarks share: the emulator as a process, workloads, tool runners, checks.

Every tool runs as a whole process in a directory of its own, so a time includes
interpreter start, imports and (for astroquery and hstsync) resolving the program.
Nothing here imports hstsync proper except ``hstsync.config`` (to learn which
``[download]`` keys the installed hstsync takes) and the emulator's body generator
(to check every byte a tool wrote).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PYTHON = sys.executable
BLOCK = 2880
#: No single tool run may take longer than this.
RUN_TIMEOUT = 900.0
#: The daemon must log that it is watching within this many seconds of its start ...
DAEMON_READY_TIMEOUT = 30.0
#: ... and is then left this long to finish its start-up work before a manifest is dropped.
DAEMON_GRACE = 1.0
#: Seconds the daemon has to exit after SIGTERM before it is killed.
DAEMON_STOP_TIMEOUT = 15.0
#: Files below this size are not worth splitting over connections (see :func:`floor_seconds`).
SPLIT_WORTH = 2 * 1024 * 1024


def fits_size(target: float) -> int:
    """The multiple of 2880 nearest ``target`` bytes (and at least two blocks: valid FITS)."""
    return max(2, round(target / BLOCK)) * BLOCK


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def floor_seconds(sizes: Sequence[int], lanes: int, rate: float, latency: float) -> float:
    """The transfer-only time no tool can beat at ``lanes`` connections, each serving one
    request at a time at ``rate`` bytes/s after ``latency`` s to its first byte.

    When some file is at least :data:`SPLIT_WORTH` bytes, perfect splitting is assumed:
    every lane waits one latency, then all bytes flow over all lanes at once. Otherwise
    (small files, no split worth it) each file is one request costing ``latency +
    size / rate``, scheduled largest first onto the lane that frees earliest; the
    makespan is exact when the files are of one size (as in the synthetic workloads) and
    within 4/3 of the best schedule otherwise.

    >>> floor_seconds([], 16, 4e6, 0.05)
    0.0
    >>> round(floor_seconds([4_000_000] * 3, 16, 4e6, 0.05), 4)  # split: 12 MB over 64 MB/s
    0.2375
    >>> round(floor_seconds([400_000] * 33, 16, 4e6, 0.05), 4)  # 3 rounds of 0.15 s
    0.45
    >>> round(floor_seconds([800_000, 400_000, 400_000], 2, 4e6, 0.05), 4)  # 0.25 | 0.15 + 0.15
    0.3
    """
    if not sizes:
        return 0.0
    if max(sizes) >= SPLIT_WORTH:
        return latency + sum(sizes) / (lanes * rate)
    free = [0.0] * max(1, lanes)  # a heap of the times each lane frees
    for size in sorted(sizes, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + latency + size / rate)
    return max(free)


# -- workloads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    """A selection to mirror: one proposal, query criteria and product filters."""

    key: str
    title: str
    proposal_id: int
    criteria: Mapping[str, Any] = field(default_factory=dict)
    filters: Mapping[str, Any] = field(default_factory=dict)
    #: ``--program`` specs the emulator needs for this workload
    programs: tuple[str, ...] = ()

    def manifest(self) -> str:
        """The same selection as an hstsync manifest (TOML)."""
        lines = [f"proposal_id = {self.proposal_id}"]
        for table, values in (("criteria", self.criteria), ("filters", self.filters)):
            if values:
                lines.append(f"[{table}]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        return "\n".join(lines) + "\n"

    def query(self) -> dict[str, Any]:
        """What the astroquery scripts need: ``query_criteria`` and ``filter_products`` kwargs."""
        criteria = {"proposal_id": self.proposal_id, "obs_collection": "HST", **self.criteria}
        return {"criteria": criteria, "filters": dict(self.filters)}


def synthetic(key: str, title: str, proposal_id: int, files: int, size: int) -> Workload:
    return Workload(key, title, proposal_id, programs=(f"{proposal_id}:{files}:{size}",))


TUTORIAL = Workload(
    "7291",
    "proposal 7291, the tutorial's selection",
    7291,
    criteria={"obs_id": ["o58701010", "o58701030"]},
    filters={"calib_level": [2], "productType": ["SCIENCE"]},
)


# -- the emulator ------------------------------------------------------------------------


@contextmanager
def emulator(
    rate: float | None, latency: float, programs: Sequence[str] = (), log: Path | None = None
) -> Iterator[str]:
    """``python -m hstsync.emulator`` in a subprocess; yields its base URL.

    Its stderr goes to ``log`` when given; :func:`emulator_errors` summarises it.
    """
    command = [PYTHON, "-m", "hstsync.emulator", "--port", "0", "--latency", str(latency)]
    if rate:
        command += ["--rate", str(rate)]
    for spec in programs:
        command += ["--program", spec]
    stderr = log.open("ab") if log else None
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"emulator did not start: {line!r}")
        yield line[line.index("http://") :].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if stderr:
            stderr.close()


def emulator_errors(log: Path) -> str:
    """A one-line summary of the tracebacks in an emulator's log ("" if none)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    count = sum(line.startswith("Traceback") for line in lines)
    if not count:
        return ""
    last = next(line for line in reversed(lines) if line and not line.startswith(" "))
    return f"the emulator logged {count} traceback(s), the last: {last}"


# -- scripts the tools run as ------------------------------------------------------------

_REPOINT = """
import json, sys
from astroquery.mast import Observations
server, query = sys.argv[1], json.loads(sys.argv[2])
portal = Observations._portal_api_connection
portal.MAST_REQUEST_URL = server + "/api/v0/invoke"
portal.COLUMNS_CONFIG_URL = server + "/portal/Mashup/Mashup.asmx/columnsconfig"
portal.MAST_DOWNLOAD_URL = server + "/api/v0.1/Download/file"
portal.MAST_BUNDLE_URL = server + "/api/v0.1/Download/bundle"
Observations._auth_obj.SESSION_INFO_URL = server + "/whoami"
obs = Observations.query_criteria(**query["criteria"])
products = Observations.get_product_list(obs)
selected = Observations.filter_products(products, **query["filters"])
"""

#: The tutorial's steps, unmodified astroquery pointed at the emulator.
ASTROQUERY_SCRIPT = _REPOINT + textwrap.dedent(
    """
    manifest = Observations.download_products(selected, verbose=False)
    assert all(manifest["Status"] == "COMPLETE"), manifest
    """
)

#: The same resolution, writing the product list (with download URLs) as JSON.
RESOLVE_SCRIPT = _REPOINT + textwrap.dedent(
    """
    from astropy.table import unique
    selected = unique(selected, keys="dataURI")
    rows = [
        {
            "url": portal.MAST_DOWNLOAD_URL + "?uri=" + str(row["dataURI"]),
            "data_uri": str(row["dataURI"]),
            "relpath": "/".join(
                ["mastDownload", str(row["obs_collection"]), str(row["obs_id"]),
                 str(row["productFilename"])]
            ),
            "size": int(row["size"]),
        }
        for row in selected
    ]
    json.dump(rows, open(sys.argv[3], "w"))
    """
)

PARFIVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from parfive import Downloader
    jobs, max_conn, max_splits = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
    dl = Downloader(max_conn=max_conn, max_splits=max_splits, progress=False)
    for job in jobs:
        dl.enqueue_file(job["url"], path=job["dir"], filename=job["name"])
    result = dl.download()
    if result.errors:
        sys.exit(f"parfive failed: {result.errors}")
    """
)


# -- resolution and checks -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """A workload's product list as astroquery resolved it, and how long that took."""

    products: list[dict[str, Any]]
    seconds: float
    digest: str

    @property
    def bytes(self) -> int:
        return sum(p["size"] for p in self.products)


def resolve(server: str, workload: Workload, work: Path) -> Resolved:
    """Resolve once, as its own process (interpreter, astroquery import, queries)."""
    script, out = work / "resolve.py", work / "products.json"
    script.write_text(RESOLVE_SCRIPT)
    started = time.perf_counter()
    subprocess.run(
        [PYTHON, str(script), server, json.dumps(workload.query()), str(out)],
        check=True,
        timeout=RUN_TIMEOUT,
    )
    seconds = time.perf_counter() - started
    products = json.loads(out.read_text())
    return Resolved(products, seconds, expected_digest(products))


def expected_digest(products: Sequence[Mapping[str, Any]]) -> str:
    """The digest :func:`tree_digest` must give: the emulator's bodies, byte for byte."""
    from hstsync.emulator.fits import Bodies

    bodies = Bodies()
    digest = hashlib.sha256()
    for product in sorted(products, key=lambda p: p["relpath"]):
        body, size = bodies.get(product["data_uri"], product["size"]), product["size"]
        one = hashlib.sha256()
        for offset in range(0, size, 1 << 22):
            one.update(body.read(offset, min(1 << 22, size - offset)))
        digest.update(product["relpath"].encode() + b"\0" + one.digest())
    return digest.hexdigest()[:16]


def tree_digest(root: Path) -> str:
    """Every file under ``root`` (its ``mastDownload`` tree), names and bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.joinpath("mastDownload").rglob("*"), key=str):
        if path.is_file():
            one = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 22):
                    one.update(chunk)
            rel = path.relative_to(root).as_posix()
            digest.update(rel.encode() + b"\0" + one.digest())
    return digest.hexdigest()[:16]


# -- running a tool ---------------------------------------------------------------------


class ToolFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    cpu: float  # user + sys seconds of the tool's process tree
    root: Path  # where its mastDownload tree is
    user: float = 0.0  # of which user seconds (the rest is the kernel's: fsync, I/O)


def timed(command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> Run:
    """Run ``command`` to completion; wall seconds and CPU seconds of its process tree."""
    log = cwd / "tool.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("wb") as out:
        try:
            proc = subprocess.run(
                command, cwd=cwd, env=env, stdout=out, stderr=out, timeout=RUN_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise ToolFailed(f"timed out after {RUN_TIMEOUT:.0f} s") from None
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise ToolFailed(f"exit status {proc.returncode}: {' | '.join(tail)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, cpu, cwd, after.ru_utime - before.ru_utime)


def hstsync_download_keys() -> set[str]:
    """The ``[download]`` keys the installed hstsync accepts."""
    from hstsync.config import DownloadConfig

    return {f.name for f in dataclasses.fields(DownloadConfig)}


def byte_compile_hstsync(python: str = PYTHON) -> None:
    """``python``'s hstsync modules compiled to bytecode, as ``pip install`` leaves an
    installed package: an editable install run under ``PYTHONDONTWRITEBYTECODE`` would
    compile every module again at each start (60 ms of each run here)."""
    compile_it = (
        "import compileall, hstsync, os; "
        "compileall.compile_dir(os.path.dirname(hstsync.__file__), quiet=1)"
    )
    subprocess.run([python, "-c", compile_it], check=True)


def hstsync_budget(budget: int) -> dict[str, int]:
    """``[download]`` settings capping hstsync at ``budget`` connections."""
    keys = hstsync_download_keys()
    settings = {"concurrency": budget}
    settings |= {k: budget for k in ("connections", "per_host") if k in keys}
    return settings


def hstsync_setup(server: str, work: Path, budget: int) -> dict[str, str]:
    """``config.toml`` and an empty ``requests/`` in ``work``; the environment to run in."""
    (work / "requests").mkdir()
    download = "".join(f"{k} = {v}\n" for k, v in hstsync_budget(budget).items())
    (work / "config.toml").write_text(
        f'[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n[download]\n{download}'
    )
    return dict(os.environ, HSTSYNC_NO_KEYRING="1")


def run_hstsync(
    server: str, workload: Workload, work: Path, budget: int, python: str = PYTHON
) -> Run:
    """``hstsync run --once`` as a whole process (``python``'s hstsync: another
    interpreter times another installed version)."""
    env = hstsync_setup(server, work, budget)
    (work / "requests" / f"w{workload.key}.toml").write_text(workload.manifest())
    command = [python, "-m", "hstsync", "run", "--once", "--config", "config.toml"]
    run = timed(command, work, env)
    return dataclasses.replace(run, root=work / "mirror")


class LogLines:
    """A process's output, line by line, read by a thread and stamped as it arrives."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=3)
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self.lines.put((time.perf_counter(), line.rstrip("\n")))
        finally:
            self.lines.put(None)  # end of output

    def wait_for(self, needles: Sequence[str], timeout: float) -> tuple[float, str]:
        """The first line holding one of ``needles`` and when it arrived; ToolFailed when
        none comes within ``timeout`` s or the output ends first."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                item = self.lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                raise ToolFailed(f"no line with {needles[0]!r} within {timeout:.0f} s") from None
            if item is None:
                raise ToolFailed(f"exited before {needles[0]!r}: {' | '.join(self.tail)}")
            self.tail.append(item[1])
            if any(needle in item[1] for needle in needles):
                return item

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def run_hstsync_daemon(
    server: str, workload: Workload, work: Path, budget: int, python: str = PYTHON
) -> Run:
    """``hstsync run``, the long-running daemon, timed from a manifest's drop to its
    request's ``done`` line: what a user of the daemon waits.

    The daemon is started first with the same configuration as :func:`run_hstsync`;
    once it logs ``watching`` and :data:`DAEMON_GRACE` more seconds have passed, the
    clock starts and the manifest is dropped as the README says (``.toml.tmp``, then a
    rename). The request's ``incomplete`` or ``invalid`` line, or its manifest set aside,
    is a failure. Then SIGTERM; the daemon must exit, with status 0, in
    :data:`DAEMON_STOP_TIMEOUT` s. CPU is the whole process's, start-up and idling
    included. ``python``: as for :func:`run_hstsync`.
    """
    env = hstsync_setup(server, work, budget)
    name = f"w{workload.key}"
    command = [python, "-m", "hstsync", "run", "--config", "config.toml"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert proc.stdout is not None
    log = LogLines(proc.stdout)
    try:
        log.wait_for(["watching "], DAEMON_READY_TIMEOUT)
        time.sleep(DAEMON_GRACE)
        tmp, manifest = work / "requests" / f"{name}.toml.tmp", work / "requests" / f"{name}.toml"
        started = time.perf_counter()
        tmp.write_text(workload.manifest())
        os.rename(tmp, manifest)
        ends = [f"request {name}: {state}" for state in ("done (", "incomplete", "invalid")]
        arrived, line = log.wait_for([*ends, f"manifest {manifest.name} set aside"], RUN_TIMEOUT)
        if ends[0] not in line:
            raise ToolFailed(line)
    finally:
        status = stop(proc, DAEMON_STOP_TIMEOUT)
        log.join(DAEMON_STOP_TIMEOUT)
        proc.stdout.close()
    if status is None:
        raise ToolFailed(f"still running {DAEMON_STOP_TIMEOUT:.0f} s after SIGTERM; killed")
    if status != 0:
        raise ToolFailed(f"exit status {status} after SIGTERM: {' | '.join(log.tail)}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(arrived - started, cpu, work / "mirror", after.ru_utime - before.ru_utime)


def stop(proc: subprocess.Popen[str], timeout: float) -> int | None:
    """SIGTERM, then its exit status; None when it had to be killed after ``timeout`` s."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def run_astroquery(server: str, workload: Workload, work: Path) -> Run:
    (work / "tutorial.py").write_text(ASTROQUERY_SCRIPT)
    return timed([PYTHON, "tutorial.py", server, json.dumps(workload.query())], work)


def _jobs(resolved: Resolved, work: Path) -> list[dict[str, str]]:
    """Each file's URL, directory and name. The directories are the tool's to make, as
    hstsync makes its own (made here, before the clock, they were a head start)."""
    jobs = []
    for product in resolved.products:
        dest = work / product["relpath"]
        jobs.append({"url": product["url"], "dir": str(dest.parent), "name": dest.name})
    return jobs


#: the least a Python asyncio downloader that makes each file durable does: one aiohttp
#: GET per file over ``files`` connections, its directory made if need be, body to a
#: temporary file, fsync, rename, fsync of the directory. No retries, checks or records:
#: a reference, not a tool. With ``mirror`` as its third argument it also does the
#: least issue #14's "catalogue row to verified, durable, recorded" adds to that: each
#: file's row recorded first (SQLite, WAL, as hstsync's store), its FITS sums checked
#: (hstsync's own check, before the fsync) and its row marked done once durable, 64
#: marks a transaction. Still no retries, resume, links refused or progress.
BARE_AIOHTTP_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sqlite3, sys, time
    import aiohttp

    async def main(jobs, files, mirror):
        queue = iter(jobs)
        marks = []
        if mirror:
            from hstsync.transfer.verify import verify_file
            db = sqlite3.connect("bare.db", isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("CREATE TABLE products (url TEXT PRIMARY KEY, path TEXT, state TEXT,"
                       " size INTEGER, updated TEXT)")
            db.execute("BEGIN")
            db.executemany("INSERT INTO products VALUES (?, ?, 'pending', NULL, NULL)",
                           [(j["url"], os.path.join(j["dir"], j["name"])) for j in jobs])
            db.execute("COMMIT")

        def flush():
            db.execute("BEGIN")
            db.executemany("UPDATE products SET state = 'done', size = ?, updated = ?"
                           " WHERE url = ?", marks)
            db.execute("COMMIT")
            marks.clear()

        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=files)
        ) as session:
            async def worker():
                for job in queue:
                    async with session.get(job["url"]) as resp:
                        body = await resp.read()
                    path = os.path.join(job["dir"], job["name"])
                    tmp = path + ".part"
                    def land():
                        os.makedirs(job["dir"], exist_ok=True)
                        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                        try:
                            os.write(fd, body)
                            if mirror:
                                verify_file(tmp, job["name"], body)
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                        os.rename(tmp, path)
                        d = os.open(job["dir"], os.O_RDONLY)
                        try:
                            os.fsync(d)
                        finally:
                            os.close(d)
                    await asyncio.to_thread(land)
                    if mirror:
                        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                        marks.append((len(body), stamp, job["url"]))
                        if len(marks) >= 64:
                            flush()
            await asyncio.gather(*(worker() for _ in range(files)))
        if marks:
            flush()

    asyncio.run(main(json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3:] == ["mirror"]))
    """
)


def run_bare_aiohttp(resolved: Resolved, work: Path, files: int, *, mirror: bool = False) -> Run:
    (work / "jobs.json").write_text(json.dumps(_jobs(resolved, work)))
    (work / "bare_get.py").write_text(BARE_AIOHTTP_SCRIPT)
    mode = ["mirror"] if mirror else []
    return timed([PYTHON, "bare_get.py", "jobs.json", str(files), *mode], work)


def run_aria2c(resolved: Resolved, work: Path, files: int, splits: int) -> Run:
    lines = [f"{j['url']}\n  dir={j['dir']}\n  out={j['name']}\n" for j in _jobs(resolved, work)]
    (work / "urls.txt").write_text("".join(lines))
    command = [
        "aria2c",
        "--input-file=urls.txt",
        f"--max-concurrent-downloads={files}",
        f"--max-connection-per-server={splits}",
        f"--split={splits}",
        "--min-split-size=1M",
        "--file-allocation=none",
        "--auto-file-renaming=false",
        "--allow-overwrite=true",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--quiet=true",
    ]
    return timed(command, work)


def run_parfive(resolved: Resolved, work: Path, files: int, splits: int) -> Run:
    (work / "jobs.json").write_text(json.dumps(_jobs(resolved, work)))
    (work / "parfive_get.py").write_text(PARFIVE_SCRIPT)
    return timed([PYTHON, "parfive_get.py", "jobs.json", str(files), str(splits)], work)


def have_parfive() -> bool:
    try:
        import parfive  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def have_aria2c() -> bool:
    return shutil.which("aria2c") is not None


def fresh(root: Path, name: str) -> Path:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
