"""Benchmark: hstsync against astroquery's ``download_products`` on the same emulator.

Starts the bundled MAST emulator in its own process with a per-connection speed
limit (default 4 MB/s) and first-byte latency (default 50 ms), then times whole
processes, each in a fresh directory:

- ``astroquery``: the tutorial's steps (query_criteria -> get_product_list ->
  filter_products -> download_products), unmodified astroquery pointed at the
  emulator;
- ``hstsync``: ``hstsync run --once`` on a manifest naming the same selection.

Both are checked to have produced the same bytes. Prints a table of times and the
ratio to astroquery. Usage: ``python bench/mirror.py [--rate 4e6] [--latency 0.05]
[--repeat 1] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PYTHON = sys.executable

MANIFEST = """\
proposal_id = 7291
[criteria]
obs_id = ["o58701010", "o58701030"]
[filters]
calib_level = [2]
productType = ["SCIENCE"]
"""

ASTROQUERY_SCRIPT = textwrap.dedent(
    """
    import sys
    from astroquery.mast import Observations
    server = sys.argv[1]
    portal = Observations._portal_api_connection
    portal.MAST_REQUEST_URL = server + "/api/v0/invoke"
    portal.COLUMNS_CONFIG_URL = server + "/portal/Mashup/Mashup.asmx/columnsconfig"
    portal.MAST_DOWNLOAD_URL = server + "/api/v0.1/Download/file"
    portal.MAST_BUNDLE_URL = server + "/api/v0.1/Download/bundle"
    Observations._auth_obj.SESSION_INFO_URL = server + "/whoami"
    obs = Observations.query_criteria(proposal_id=7291, obs_collection="HST",
                                      obs_id=["o58701010", "o58701030"])
    products = Observations.get_product_list(obs)
    selected = Observations.filter_products(products, calib_level=[2], productType="SCIENCE")
    manifest = Observations.download_products(selected, verbose=False)
    assert all(manifest["Status"] == "COMPLETE"), manifest
    """
)


@contextmanager
def emulator(rate: float, latency: float) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "hstsync.emulator",
            "--port",
            "0",
            "--rate",
            str(rate),
            "--latency",
            str(latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"emulator did not start: {line!r}")
        yield line[line.index("http://") :].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.fits")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def run_astroquery(server: str, work: Path) -> tuple[float, str]:
    script = work / "tutorial.py"
    script.write_text(ASTROQUERY_SCRIPT)
    started = time.perf_counter()
    subprocess.run([PYTHON, str(script), server], cwd=work, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    return elapsed, tree_digest(work / "mastDownload")


def run_hstsync(server: str, work: Path, concurrency: int) -> tuple[float, str]:
    (work / "requests").mkdir()
    (work / "requests" / "7291.toml").write_text(MANIFEST)
    config = work / "config.toml"
    config.write_text(
        f'[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n[download]\nconcurrency = {concurrency}\n'
    )
    env = dict(os.environ, HSTSYNC_NO_KEYRING="1")
    started = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "hstsync", "run", "--once", "--config", str(config)],
        cwd=work,
        check=True,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    return elapsed, tree_digest(work / "mirror" / "mastDownload")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=4e6, help="bytes/s per connection")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds to first byte")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool (best kept)")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"astroquery download_products": [], "hstsync run --once": []}
    digests: set[str] = set()
    with emulator(args.rate, args.latency) as server:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as h:
                t, d = run_astroquery(server, Path(a))
                results["astroquery download_products"].append(t)
                digests.add(d)
                t, d = run_hstsync(server, Path(h), args.concurrency)
                results["hstsync run --once"].append(t)
                digests.add(d)
    if len(digests) != 1:
        print(f"the tools produced different trees: {digests}", file=sys.stderr)
        return 1
    base = min(results["astroquery download_products"])
    print(
        f"workload: proposal 7291 tutorial selection, 6 files, 50.18 MB; "
        f"{args.rate / 1e6:g} MB/s per connection, {args.latency * 1000:g} ms first byte; "
        f"hstsync concurrency {args.concurrency}; best of {args.repeat}"
    )
    print(f"{'tool':32} {'seconds':>8} {'ratio':>7}")
    for name, times in results.items():
        best = min(times)
        print(f"{name:32} {best:8.2f} {best / base:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
