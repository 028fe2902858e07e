"""Hostile catalogue rows through a real ``hstsync run --once``: one line, never a traceback.

A lone surrogate in a text field, a size of 2**63, a size given as a list, "12abc" or
"NaN" used to crash the whole pass (other requests got nothing) or fail the request's
whole resolution. Each such row must fail alone, with its reason, while the rest of
its program and every other request are mirrored.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_hstsync, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator, default_catalogue

HOSTILE = "94001"


async def test_hostile_rows_fail_alone_and_the_pass_goes_on(tmp_path: Path) -> None:
    catalogue = default_catalogue()
    good, *bad = catalogue.add_program(HOSTILE, files=6, size=5760)
    surrogate, huge, listed, text, nan = bad
    catalogue.set_product_quirks(surrogate.filename, cells={"description": "bad \ud800 text"})
    catalogue.set_product_quirks(huge.filename, cells={"size": 2**63})
    catalogue.set_product_quirks(listed.filename, cells={"size": [5760, 5760]})
    catalogue.set_product_quirks(text.filename, cells={"size": "12abc"})
    catalogue.set_product_quirks(nan.filename, cells={"size": "NaN"})
    async with Emulator(catalogue) as emulator:
        config = write_config(tmp_path, emulator.url)
        (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
        (tmp_path / "requests" / "hostile.toml").write_text(f"proposal_id = {HOSTILE}\n")

        code, _, err = await run_hstsync("run", "--once", "--config", str(config), cwd=tmp_path)
        assert "Traceback" not in err
        assert code == 1  # some products failed: exit 1, not a crash

        code, out, err = await run_hstsync(
            "status", "--json", "--config", str(config), cwd=tmp_path
        )
        states = {r["name"]: r for r in json.loads(out)["requests"]}
        assert states["7291"]["state"] == "done"  # the other request got everything
        code, out, err = await run_hstsync(
            "status", "--json", "hostile", "--config", str(config), cwd=tmp_path
        )
        products = {p["filename"]: p for p in json.loads(out)["products"]}

    assert products[good.filename]["state"] == "done"
    for product, reason in [
        (nan, "is not a number: 'NaN'"),
        (surrogate, "is not valid text"),
        (huge, "too large"),
        (listed, "is not a number"),
        (text, "is not a number: '12abc'"),
    ]:
        row = products[product.filename]
        assert row["state"] == "failed", (product.filename, row)
        assert reason in (row["last_error"] or ""), (product.filename, row["last_error"])
