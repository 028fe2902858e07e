"""Planning (what would be fetched, is there room), the ECSV results table, and the
curl export — each against the emulator and real files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from astropy.table import Table
from helpers import leave_part, run_hstsync, write_config
from hypothesis import given, settings
from hypothesis import strategies as st

from hstsync.cli.curl import curl_script
from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.config import Config, for_directory
from hstsync.emulator import Emulator, run_in_thread
from hstsync.emulator.fits import Bodies
from hstsync.model import Product, RequestState
from hstsync.service.daemon import run_once
from hstsync.service.sync.holdings import plan_files
from hstsync.service.sync.jobs import download_url
from hstsync.service.sync.planner import HEADROOM, room_for
from hstsync.service.sync.results import results_path
from hstsync.store.db import Store


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Config:
    cfg = for_directory(tmp_path, server=emulator.url, backoff=0.01, backoff_max=0.02, retries=1)
    cfg.paths.requests.mkdir()
    return cfg


def product(name: str, size: int, obs_id: str = "o58701010") -> Product:
    return Product(
        data_uri=f"mast:HST/product/{name}",
        obs_collection="HST",
        obs_id=obs_id,
        filename=name,
        size=size,
    )


def fits_body(p: Product) -> bytes:
    assert p.size is not None
    return Bodies().get(p.data_uri, p.size).all()


def test_file_of_the_right_size_with_other_content_is_not_present(tmp_path: Path):
    mirror = tmp_path / "mirror"
    good, bad = product("a_flt.fits", 5760), product("b_flt.fits", 5760)
    base = mirror / "mastDownload/HST/o58701010"
    base.mkdir(parents=True)
    (base / "a_flt.fits").write_bytes(fits_body(good))
    (base / "b_flt.fits").write_bytes(b"<html>not the file</html>".ljust(5760))

    plan = plan_files([good, bad], mirror)

    assert [f.present for f in plan.files] == [True, False]
    assert plan.to_fetch == 1


def test_plan_counts_present_partial_missing_and_refused(tmp_path: Path):
    mirror = tmp_path / "mirror"
    present = product("a_flt.fits", 5760)
    partial = product("b_flt.fits", 5760)
    missing = product("c_flt.fits", 2880 * 3)
    hostile = product("../../etc/passwd", 10)
    base = mirror / "mastDownload/HST/o58701010"
    base.mkdir(parents=True)
    (base / "a_flt.fits").write_bytes(fits_body(present))
    leave_part(base / "b_flt.fits", b"x" * 1000, '"v1"')
    # a part nothing names (no control file) is of unknown origin: not held
    (base / "c_flt.fits.part").write_bytes(b"y" * 2000)

    plan = plan_files([present, partial, missing, hostile], mirror)

    assert plan.present == 1
    assert plan.to_fetch == 2
    assert plan.total == 5760 + 5760 + 2880 * 3
    assert plan.missing_bytes == (5760 - 1000) + 2880 * 3
    [refused] = [f for f in plan.files if f.refused]
    assert refused.product is hostile and "separator" in refused.refused
    assert plan.fits


def test_room_needs_headroom():
    assert room_for(0, 0)
    assert room_for(100, 100 + HEADROOM)
    assert not room_for(100, 99 + HEADROOM)


async def test_request_that_cannot_fit_is_refused_with_the_numbers(
    config: Config, emulator: Emulator
):
    # a catalogue file no disk here can hold: nothing is fetched, the request says why
    emulator.catalogue.add_product("o58701010", "o58701010_huge.fits", 2880 * 10**12)
    (config.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)

    assert await run_once(config) == 1

    with Store.open_readonly(config.paths.database) as store:
        row = store.get_request("7291")
        assert row is not None and row.state is RequestState.INCOMPLETE
        assert row.last_error and "not enough room" in row.last_error
        assert "2880.00 TB" in row.last_error
    assert [r for r in emulator.requests if r.path.endswith("/Download/file")] == []


async def test_results_table_is_astroquerys_manifest_as_ecsv(config: Config, emulator: Emulator):
    (config.paths.requests / "7291.toml").write_text(TUTORIAL_MANIFEST)
    assert await run_once(config) == 0

    table = Table.read(results_path(config.paths.mirror, "7291"), format="ascii.ecsv")

    assert table.colnames == ["Local Path", "Status", "Message", "URL"]
    assert len(table) == 6
    assert set(table["Status"]) == {"COMPLETE"}
    for path in table["Local Path"]:
        assert Path(path).is_file()
        assert "/mastDownload/HST/" in path


def test_exported_curl_script_fetches_and_resumes_byte_identical(tmp_path: Path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    # curl runs as a blocking subprocess: the emulator serves from its own thread
    with run_in_thread() as emulator:
        _fetch_with_curl(emulator, tmp_path)


def _fetch_with_curl(emulator: Emulator, tmp_path: Path) -> None:
    names = ["o58701010_x1d.fits", "o58701010_flt.fits"]
    products = [product(n, len(emulator.body(f"mast:HST/product/{n}"))) for n in names]
    script = tmp_path / "fetch.sh"
    script.write_text(
        curl_script("7291", [(p, download_url(emulator.url, p.data_uri)) for p in products])
    )
    out = tmp_path / "elsewhere"
    out.mkdir()
    # a partial file from an earlier, interrupted run of the script
    first = out / "mastDownload/HST/o58701010/o58701010_flt.fits"
    first.parent.mkdir(parents=True)
    first.write_bytes(emulator.body("mast:HST/product/o58701010_flt.fits")[:1_000_000])

    proc = subprocess.run(["sh", str(script)], cwd=out, capture_output=True, timeout=120)

    assert proc.returncode == 0, proc.stderr
    for n in names:
        got = (out / "mastDownload/HST/o58701010" / n).read_bytes()
        assert got == emulator.body(f"mast:HST/product/{n}")
    ranged = [r for r in emulator.requests if "o58701010_flt.fits" in r.query]
    assert ranged[-1].headers.get("Range") == "bytes=1000000-"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(*[st.text(st.characters(blacklist_characters="\x00"), max_size=12)] * 4),
        max_size=6,
    )
)
def test_results_lines_are_written_as_astropy_writes_them(lines: list[tuple[str, ...]]):
    from hstsync.service.sync.results import ecsv_line, ecsv_text

    header = ecsv_text([])
    assert header + "".join(ecsv_line(line) for line in lines) == ecsv_text(lines)


def test_results_lines_read_back_as_the_cells_they_were_written_from():
    from hstsync.service.sync.results import COLUMNS, ecsv_line, ecsv_text

    lines = [
        ("/srv/mirror with space/a.fits", "COMPLETE", "None", "None"),
        ("", "ERROR", 'said "no"\nand more', "https://x/y?uri=a b"),
    ]
    text = ecsv_text([]) + "".join(ecsv_line(line) for line in lines)
    table = Table.read(text, format="ascii.ecsv")
    assert tuple(table[0]) == lines[0]
    # an empty cell reads back masked, as from astropy's own writer
    assert bool(table["Local Path"].mask[1])
    assert tuple(table[1])[1:] == lines[1][1:]
    assert tuple(table.colnames) == COLUMNS


def test_plan_of_a_program_in_batches_prints_one_table_with_one_header(tmp_path: Path):
    import io

    from hstsync.cli.report import print_plan
    from hstsync.model import Product
    from hstsync.service.sync.planner import Action, Plan, PlannedFile

    def batch(*names: str) -> Plan:
        files = []
        for name in names:
            p = Product(
                f"mast:HST/product/{name}", "HST", name[:9], name, 5760, product_type="SCIENCE"
            )
            files.append(PlannedFile(p, Action.FETCH, tmp_path / name))
        return Plan(tuple(files), free=10**12)

    out = io.StringIO()
    fits = print_plan(
        "big", [batch("o58701010_long_name_x2d.fits"), batch("o1_flt.fits")], file=out
    )

    lines = out.getvalue().splitlines()
    assert fits
    assert sum("productFilename" in line for line in lines) == 1
    rows = [n for n, line in enumerate(lines) if "SCIENCE" in line]
    # the second batch goes on right below the first, in columns no narrower
    assert rows[1] == rows[0] + 1
    assert lines[rows[0]].index("SCIENCE") == lines[rows[1]].index("SCIENCE")
    assert "big: 2 products" in out.getvalue()


def test_plan_fits_a_narrow_terminal_and_never_prints_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import io

    from hstsync.cli.report import print_plan
    from hstsync.model import Product
    from hstsync.service.sync.planner import Action, Plan, PlannedFile

    names = ["o58701010_a_rather_long_product_name_x2d.fits", "evil\x1b]0;title\x07.fits"]
    files = []
    for name in names:
        p = Product(f"mast:HST/product/{name}", "HST", "o58701010", name, None, "2000")
        files.append(PlannedFile(p, Action.FETCH, tmp_path / name))

    def printed(columns: str) -> list[str]:
        monkeypatch.setenv("COLUMNS", columns)
        out = io.StringIO()
        print_plan("narrow", [Plan(tuple(files), free=10**12)], file=out)
        return out.getvalue().splitlines()

    narrow = printed("60")
    table = [line for line in narrow if "o58701010" in line or "productFilename" in line[:30]]
    assert table and all(len(line) <= 60 for line in table)
    assert any("…" in line for line in table)  # the long name is cut, visibly
    assert all("to fetch" in line for line in table if "o58701010" in line)  # states whole
    wide = printed("1000")  # room enough: nothing cut
    assert any(names[0] in line for line in wide)
    assert not any("\x1b" in line or "\x07" in line for line in narrow + wide)
    # a size the catalogue does not give reads as astropy prints a masked cell
    assert all(" -- " in line and "None" not in line for line in wide if "o58701010 " in line)


async def test_plan_agrees_with_run_when_the_catalogue_size_is_wrong(
    tmp_path: Path, emulator: Emulator
) -> None:
    # the catalogue says one block more than the server sends: run takes the server's
    # word (done, with a size note); plan must say the same, not "to fetch"
    emulator.catalogue.set_product_quirks("o58701010_x1d.fits", cells={"size": 77760 + 2880})
    config = write_config(tmp_path, emulator.url)
    (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    code, _, err = await run_hstsync("run", "--once", "--config", str(config))
    assert code == 0, err

    code, out, err = await run_hstsync("plan", "7291", "--config", str(config))

    assert code == 0, err
    [line] = [x for x in out.splitlines() if "o58701010_x1d.fits" in x]
    assert line.split()[-2:] == ["77760", "present"], out  # the server's size, in place
    assert "6 already mirrored; 0 to fetch" in out, out


async def test_a_second_request_for_files_whose_catalogue_size_is_wrong_fetches_nothing(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.catalogue.set_product_quirks("o58701010_x1d.fits", cells={"size": 77760 + 2880})
    hook_out = tmp_path / "hooks.jsonl"
    config = write_config(tmp_path, emulator.url)
    with config.open("a") as fh:
        fh.write(f'[hooks]\non_change = "cat >> {hook_out}; echo >> {hook_out}"\n')
    (tmp_path / "requests" / "first.toml").write_text(TUTORIAL_MANIFEST)
    code, _, err = await run_hstsync("run", "--once", "--config", str(config))
    assert code == 0, err
    fetched = len([r for r in emulator.requests if r.method == "GET" and "x1d" in r.query])

    (tmp_path / "requests" / "second.toml").write_text(TUTORIAL_MANIFEST)
    code, _, err = await run_hstsync("run", "--once", "--config", str(config))

    assert code == 0, err
    again = len([r for r in emulator.requests if r.method == "GET" and "x1d" in r.query])
    assert again == fetched  # neither x1d fetched a second time
    documents = [json.loads(x) for x in hook_out.read_text().split("\n\n") if x.strip()]
    second = [d for d in documents if d.get("request") == "second"]
    assert all(d["new_file_count"] == 0 for d in second)
