"""A program served the way the real archive serves one ends complete, each file fetched once.

Proposal 12062 of the emulator's default catalogue has every habit of the real
archive at once (``hstsync/emulator/realistic.py``): repeated rows, null cells, sizes
as floats and strings, wrong catalogue sizes, chunked answers, a server without Range,
odd FITS headers, a JPEG preview, redirects to another host, paging and a portal that
answers EXECUTING first. None of it is fatal, so a real ``hstsync run --once`` must
end with exit 0, every unique product done and byte-identical, and a second pass must
fetch nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

from helpers import run_hstsync

from hstsync.emulator import Emulator, default_catalogue
from hstsync.emulator.realistic import PROPOSAL_ID, expected_products

DOWNLOAD = "/api/v0.1/Download/file"


def file_requests(emulator: Emulator) -> Counter[str]:
    return Counter(
        parse_qs(r.query)["uri"][0]
        for r in emulator.requests
        if r.path == DOWNLOAD and "uri" in parse_qs(r.query)
    )


async def test_realistic_program_ends_complete_byte_identical_each_file_fetched_once(
    tmp_path: Path,
) -> None:
    catalogue = default_catalogue()
    expected = expected_products(catalogue)
    (tmp_path / "requests").mkdir()
    (tmp_path / "requests" / "real.toml").write_text(f"proposal_id = {PROPOSAL_ID}\n")
    config = tmp_path / "config.toml"
    async with Emulator(catalogue) as emulator:
        config.write_text(
            '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "state/hstsync.db"\n'
            f'[mast]\nserver = "{emulator.url}"\n'
            # every pass re-resolves the program: the re-sync below sees the same quirks
            '[schedule]\nresync_every = "1s"\n'
        )
        code, _, err = await run_hstsync("run", "--once", "--config", str(config), cwd=tmp_path)
        assert code == 0, err

        mirror = tmp_path / "mirror"
        for product in expected.values():
            assert (mirror / product.relpath).read_bytes() == product.body, product.relpath
        held = {str(p.relative_to(mirror)) for p in (mirror / "mastDownload").rglob("*")}
        assert {p for p in held if "." in Path(p).name} == {e.relpath for e in expected.values()}
        assert file_requests(emulator) == Counter(dict.fromkeys(expected, 1))

        code, out, err = await run_hstsync(
            "status", "--json", "real", "--config", str(config), cwd=tmp_path
        )
        doc = json.loads(out)
        [request] = doc["requests"]
        assert request["state"] == "done"
        assert request["products"]["total"] == len(expected) == request["products"]["done"]
        notes = {p["filename"]: p.get("size_note") for p in doc["products"]}
        # the two files whose catalogue size is wrong say so; the server's size won
        assert notes["jbqx01kdq_flt.fits"] and notes["jbqx01kdq_flc.fits"]
        sizes = {p["data_uri"]: p["size"] for p in doc["products"]}
        assert sizes == {uri: len(e.body) for uri, e in expected.items()}

        # what a person reads at 80 columns: each quirk said beside its file, nothing cut
        os.environ["COLUMNS"] = "80"
        try:
            code, table, err = await run_hstsync(
                "status", "real", "--config", str(config), cwd=tmp_path
            )
        finally:
            del os.environ["COLUMNS"]
        assert code == 0, err
        lines = table.splitlines()
        assert all(len(line) <= 80 for line in lines), table
        after = {
            name: lines[i + 1].strip()
            for i, line in enumerate(lines[:-1])
            for name in notes
            if line.endswith(name)
        }
        assert (
            after["jbqx01kdq_flt.fits"]
            == "size: catalogue says 14,400 bytes, the server sent 11,520"
        )
        assert (
            after["jbqx01kdq_raw.fits"]
            == "size: the catalogue gives none, the server sent 8,640 bytes"
        )
        assert after["jbqx01021_drc.fits"] == "in jbqx01020/"

        # the nightly re-sync: the catalogue still has its quirks, nothing is fetched again
        await asyncio.sleep(1.1)
        before = len(emulator.requests)
        code, _, err = await run_hstsync("run", "--once", "--config", str(config), cwd=tmp_path)
        assert code == 0, err
        later = emulator.requests[before:]
        assert any(r.path == "/api/v0/invoke" for r in later)  # it did look again
        # no file fetched again; the pass's rolling verify may ask whether one changed (a
        # conditional GET: 304, no body)
        assert [r for r in later if r.path == DOWNLOAD and r.status != 304] == []
        assert all(r.body_bytes_sent == 0 for r in later if r.path == DOWNLOAD)
