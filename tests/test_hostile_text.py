"""Text from the archive and the file system never reaches a terminal, a log line or a
table raw: escape sequences that retitle or clear a terminal, a newline that forges a
log line, control characters in a ``dataURI``; and a made-up row cannot take another
product's path by ending its URI in that product's file name.

Real ``hstsync run --once`` and ``hstsync status`` processes against the emulator;
rows into products through the pure boundary.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_hstsync, write_config

from hstsync.archive.rows import products_from_rows
from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator, Fault, FaultKind, default_catalogue
from hstsync.model import ProductState, RequestState
from hstsync.store import Store

#: window title, bell, clear screen, cursor home, and a newline forging a log line
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[H\nERROR hstsync.forged: all files deleted"


def raw_controls(text: str) -> list[str]:
    """The control characters in ``text``, line breaks aside."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]


async def test_a_portal_error_with_escape_sequences_reaches_no_terminal_or_log_raw(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    emulator.faults.add(
        Fault(FaultKind.INVOKE_ERROR, match="Mast.Caom.Filtered", times=None, message=HOSTILE)
    )

    code, _, err = await run_hstsync("run", "--once", "--config", str(config))

    assert code == 1
    assert raw_controls(err) == []
    assert not any(line.startswith("ERROR hstsync.forged") for line in err.splitlines())
    assert "\\x1b]0;pwned\\x07" in err  # shown, escaped
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        row = store.get_request("7291")
    assert row is not None and row.last_error is not None
    assert raw_controls(row.last_error) == [] and "\n" not in row.last_error
    code, out, _ = await run_hstsync("status", "--config", str(config))
    assert raw_controls(out) == [] and "\\x1b[2J" in out
    assert not any(line.startswith("ERROR hstsync.forged") for line in out.splitlines())


async def test_status_shows_control_characters_already_stored_escaped(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    assert (await run_hstsync("run", "--once", "--config", str(config)))[0] == 0
    with Store(tmp_path / "hstsync.db") as store:  # as an older hstsync stored it
        store.set_request_state("7291", RequestState.INCOMPLETE, HOSTILE)
        [first, *_] = store.products("7291")
        store.mark("7291", first.product.data_uri, ProductState.FAILED, error=HOSTILE)

    for args in (["status"], ["status", "7291"]):
        _, out, err = await run_hstsync(*args, "--config", str(config))
        assert raw_controls(out + err) == [], args
        assert "\\x1b]0;pwned\\x07" in out, args
        assert not any(line.startswith("ERROR hstsync.forged") for line in out.splitlines())
    _, out, _ = await run_hstsync("status", "--json", "--config", str(config))
    assert raw_controls(out) == []
    assert json.loads(out)["requests"][0]["last_error"] == HOSTILE  # JSON escapes it itself


async def test_a_data_uri_with_control_characters_is_refused_and_fails_alone(tmp_path: Path):
    catalogue = default_catalogue()
    good, bad = catalogue.add_program(94002, files=2, size=5760)
    catalogue.set_product_quirks(
        bad.filename, cells={"dataURI": f"mast:HST/product/\x1b[2J{bad.filename}"}
    )
    async with Emulator(catalogue) as emulator:
        config = write_config(tmp_path, emulator.url)
        (tmp_path / "requests" / "hostile.toml").write_text("proposal_id = 94002\n")

        code, _, err = await run_hstsync("run", "--once", "--config", str(config))

    assert code == 1 and "Traceback" not in err
    assert raw_controls(err) == []
    with Store.open_readonly(tmp_path / "hstsync.db") as store:
        rows = {row.product.filename: row for row in store.products("hostile")}
    assert rows[good.filename].state is ProductState.DONE
    failed = rows[bad.filename]
    assert failed.state is ProductState.FAILED
    assert failed.last_error is not None
    assert "dataURI" in failed.last_error and "control character" in failed.last_error
    assert raw_controls(failed.last_error) == []


def row(uri: str, filename: str = "o58701010_x2d.fits") -> dict[str, object]:
    return {
        "dataURI": uri,
        "obs_collection": "HST",
        "obs_id": "o58701010",
        "productFilename": filename,
        "size": 5760,
    }


def test_a_made_up_row_whose_uri_ends_in_another_products_file_name_does_not_take_its_path():
    genuine = "mast:HST/product/o58701010_x2d.fits"
    for made_up in (
        "mast:HST/product/aaa/o58701010_x2d.fits",  # sorts first, ends in "/" + the name
        "mast:HST/product/aao58701010_x2d.fits",  # sorts first, ends in the name
    ):
        for rows in ([row(made_up), row(genuine)], [row(genuine), row(made_up)]):
            products = {p.data_uri: p for p in products_from_rows(rows)}
            assert products[genuine].problem is None, made_up
            problem = products[made_up].problem
            assert problem is not None and genuine in problem


async def test_a_manifest_name_with_escape_sequences_and_a_newline_is_shown_escaped(
    tmp_path: Path, emulator: Emulator
):
    config = write_config(tmp_path, emulator.url)
    name = "evil\x1b]0;pwned\x07\nERROR hstsync.forged: x.toml"
    (tmp_path / "requests" / name).write_text("proposal_id = 7291\n")

    code, _, err = await run_hstsync("run", "--once", "--config", str(config))

    assert code == 1 and raw_controls(err) == []
    assert not any(line.startswith("ERROR hstsync.forged") for line in err.splitlines())
    [note] = (tmp_path / "requests" / "failed").glob("*.error.txt")
    assert raw_controls(note.read_text()) == [] and note.read_text().count("\n") == 2
    code, out, err = await run_hstsync("status", "--config", str(config))
    assert raw_controls(out + err) == [] and "evil\\x1b]0;pwned\\x07\\nERROR" in out
