"""Is the mirror still the archive? ``hstsync verify``, ``prune``, the attic and the
daemon's rolling verify, through real processes against an emulator that changes its
mind: it reprocesses files (same name, same or new size), withdraws a product, and
sends HTTP validators or not.

The archive's side is counted in bytes the emulator served per file: an unchanged file
costs at most a 64 KiB head read (nothing with validators), a changed or lost one its
body once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from helpers import daemon, run_hstsync, until, write_config

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator, default_catalogue
from hstsync.model import ProductState
from hstsync.store import Store
from hstsync.transfer import HEAD_BYTES, keywords, primary_header

HST = "mastDownload/HST"
SIX = {
    f"o5870{obs}_{kind}.fits": f"{HST}/o5870{obs}/o5870{obs}_{kind}.fits"
    for obs in ("1010", "1030")
    for kind in ("x1d", "x2d", "flt")
}
URI = "mast:HST/product/{}"


async def mirrored(root: Path, emu: Emulator, **download: object) -> Path:
    """The tutorial's six files mirrored by a ``run --once``; its config."""
    config = write_config(root, emu.url, download={"concurrency": 1, **download})
    (root / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    code, _, err = await run_hstsync("run", "--once", "--config", str(config))
    assert code == 0, err
    return config


def kept(root: Path, emu: Emulator, **schedule: str) -> tuple[Path, Path]:
    """A config whose passes verify and clear the attic on ``schedule`` (attic entries
    kept 1 s), the tutorial's manifest dropped, and an attic entry long past its age:
    the config and that entry."""
    config = write_config(root, emu.url, download={"concurrency": 1}, attic_keep="1s", **schedule)
    (root / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
    stale = root / "mirror" / "attic" / HST / "o58701010" / "o58701010_x1d.fits.20200101T000000Z"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a version replaced long ago")
    return config, stale


def served(emu: Emulator) -> dict[str, int]:
    return {uri.rsplit("/", 1)[1]: n for uri, n in emu.bytes_served.items()}


def status_json(root: Path, config: Path) -> dict[str, object]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "hstsync", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        env=dict(os.environ, HSTSYNC_NO_KEYRING="1"),
        check=False,
    ).stdout
    doc: dict[str, object] = json.loads(out)
    return doc


async def test_verify_without_validators_finds_every_change_and_ends_the_archives(
    tmp_path: Path,
) -> None:
    async with Emulator(default_catalogue(), validators=False) as emu:
        config = await mirrored(tmp_path, emu)
        mirror = tmp_path / "mirror"
        before = served(emu)
        # the archive: one file reprocessed at its size, one at a new size, one product
        # no longer listed; here: one file deleted, one with a byte flipped
        emu.catalogue.reprocess("o58701010_flt.fits")
        emu.catalogue.reprocess("o58701030_x1d.fits", size=77760 + 5760)
        emu.catalogue.withdraw("o58701030_flt.fits")
        (mirror / SIX["o58701010_x1d.fits"]).unlink()
        flipped = mirror / SIX["o58701030_x2d.fits"]
        data = bytearray(flipped.read_bytes())
        data[100_000] ^= 0x01
        flipped.write_bytes(bytes(data))
        old_flt = (mirror / SIX["o58701010_flt.fits"]).read_bytes()

        code, out, err = await run_hstsync("verify", "7291", "--config", str(config))

        assert code == 0, out + err
        assert "1 changed" not in out  # two changed: one in place, one of a new size
        for line in ("2 changed on the archive", "1 missing here", "1 damaged here"):
            assert line in out, out
        assert "1 withdrawn" in out and "verify: every listed file is the archive's" in out
        # every listed file is the archive's current version
        for name, relpath in SIX.items():
            if name != "o58701030_flt.fits":
                assert (mirror / relpath).read_bytes() == emu.body(URI.format(name)), name
        # the withdrawn product's file is still there; the replaced versions are kept
        assert (mirror / SIX["o58701030_flt.fits"]).exists()
        attic = {p.name.split(".fits.")[0] + ".fits": p for p in (mirror / "attic").rglob("*")
                 if p.is_file()}  # fmt: skip
        assert set(attic) == {"o58701010_flt.fits", "o58701030_x1d.fits", "o58701030_x2d.fits"}
        assert attic["o58701010_flt.fits"].read_bytes() == old_flt
        assert attic["o58701030_x2d.fits"].read_bytes() == bytes(data)  # the damaged copy
        [request] = status_json(tmp_path, config)["requests"]  # type: ignore[misc]
        assert request["products"]["withdrawn"] == 1 and request["products"]["total"] == 5
        # what the archive served: the changed and lost files, and a head per file checked
        delta = {name: n - before.get(name, 0) for name, n in served(emu).items()}
        bodies = {
            "o58701010_flt.fits",  # changed in place
            "o58701030_x1d.fits",  # changed size
            "o58701010_x1d.fits",  # lost here
            "o58701030_x2d.fits",  # damaged here
        }
        allowed = sum(len(emu.body(URI.format(n))) for n in bodies) + HEAD_BYTES * 5
        assert sum(delta.values()) <= allowed, delta
        assert delta.get("o58701030_flt.fits", 0) == 0  # withdrawn: not asked for
        assert 0 < delta["o58701010_x2d.fits"] <= HEAD_BYTES  # unchanged: its head only


async def test_verify_with_validators_of_an_unchanged_mirror_transfers_no_body(
    tmp_path: Path,
) -> None:
    async with Emulator(default_catalogue(), validators=True) as emu:
        config = await mirrored(tmp_path, emu)
        before = served(emu)

        code, out, err = await run_hstsync("verify", "--config", str(config))

        assert code == 0, out + err
        assert "6 the same as the archive's" in out
        assert served(emu) == before  # conditional requests: 304, no body
        conditional = [r for r in emu.requests if r.status == 304]
        assert len(conditional) == 6
        # the request's state is told once, though it is settled after the pass and again
        # after the checks
        assert err.count("request 7291: done (6/6 done)") == 1, err


async def test_verify_dry_run_reports_and_changes_nothing(tmp_path: Path) -> None:
    async with Emulator(default_catalogue(), validators=False) as emu:
        config = await mirrored(tmp_path, emu)
        mirror = tmp_path / "mirror"
        emu.catalogue.reprocess("o58701010_flt.fits")
        (mirror / SIX["o58701010_x1d.fits"]).unlink()
        old = (mirror / SIX["o58701010_flt.fits"]).read_bytes()

        code, out, err = await run_hstsync(
            "verify", "7291", "--dry-run", "--json", "--config", str(config)
        )

        assert code == 1, out + err
        doc = json.loads(out)
        verdicts = {f["path"].rsplit("/", 1)[1]: f["verdict"] for f in doc["requests"][0]["files"]}
        assert verdicts["o58701010_flt.fits"] == "changed"
        assert verdicts["o58701010_x1d.fits"] == "missing"
        assert not doc["true"]
        assert (mirror / SIX["o58701010_flt.fits"]).read_bytes() == old  # nothing fetched
        assert not (mirror / SIX["o58701010_x1d.fits"]).exists()
        assert not (mirror / "attic").exists()


async def test_prune_moves_withdrawn_files_to_the_attic_and_nothing_else(tmp_path: Path) -> None:
    async with Emulator(default_catalogue()) as emu:
        config = await mirrored(tmp_path, emu)
        mirror = tmp_path / "mirror"
        emu.catalogue.withdraw("o58701030_flt.fits")
        code, _, err = await run_hstsync("run", "--once", "--config", str(config))
        assert code == 0, err
        with Store.open_readonly(tmp_path / "hstsync.db") as store:
            states = {row.product.filename: row.state for row in store.products("7291")}
        assert states["o58701030_flt.fits"] is ProductState.WITHDRAWN
        assert (mirror / SIX["o58701030_flt.fits"]).exists()  # never removed by a pass

        code, out, err = await run_hstsync("prune", "--dry-run", "--config", str(config))
        assert code == 0 and "would move" in out and (mirror / SIX["o58701030_flt.fits"]).exists()

        code, out, err = await run_hstsync("prune", "7291", "--config", str(config))

        assert code == 0, err
        assert not (mirror / SIX["o58701030_flt.fits"]).exists()
        [kept] = [p for p in (mirror / "attic").rglob("*") if p.is_file()]
        assert kept.name.startswith("o58701030_flt.fits.")
        assert kept.read_bytes() == emu.body(URI.format("o58701030_flt.fits"))
        for name, relpath in SIX.items():
            if name != "o58701030_flt.fits":
                assert (mirror / relpath).exists()
        with Store.open_readonly(tmp_path / "hstsync.db") as store:
            assert {row.product.filename for row in store.products("7291")} == set(SIX) - {
                "o58701030_flt.fits"
            }
        # status tells what the attic holds, in both forms
        attic = status_json(tmp_path, config)["attic"]
        assert attic == {"files": 1, "bytes": kept.stat().st_size}
        code, out, err = await run_hstsync("status", "--config", str(config))
        assert "attic: 1 replaced version(s)" in out, out


async def test_the_daemon_verifies_a_share_of_the_mirror_each_pass_and_clears_the_attic(
    tmp_path: Path,
) -> None:
    async with Emulator(default_catalogue(), validators=False) as emu:
        config, stale = kept(tmp_path, emu, resync_every="2s", verify_every="6s")
        mirror = tmp_path / "mirror"
        async with daemon(tmp_path, config) as d:

            def verified() -> int:
                with Store.open_readonly(tmp_path / "hstsync.db") as store:
                    rows = store.products("7291")
                    return sum(1 for row in rows if row.verified and row.sha256)

            await until(lambda: verified() == 6, what="the first pass", daemon=d)
            landed = time.time()
            emu.catalogue.reprocess("o58701030_x2d.fits")

            def refetched() -> bool:
                path = mirror / SIX["o58701030_x2d.fits"]
                return path.read_bytes() == emu.body(URI.format("o58701030_x2d.fits"))

            # within a verify period, without anyone asking, the change is found
            await until(refetched, what="the rolling verify to find the change", daemon=d)
            assert time.time() - landed < 30
            assert not stale.exists()  # older than attic_keep: removed
            attic = [p for p in (mirror / "attic").rglob("*") if p.is_file()]
            assert all("o58701030_x2d.fits" in p.name for p in attic)
            assert "verify" in d.output()


async def test_the_nightly_run_verifies_a_share_of_the_mirror_and_clears_the_attic(
    tmp_path: Path,
) -> None:
    """Under the nightly timer (``run --once``) the mirror is kept as the daemon keeps it:
    the share of files due is verified after the pass and old attic entries removed."""
    async with Emulator(default_catalogue(), validators=False) as emu:
        config, stale = kept(tmp_path, emu, resync_every="1s", verify_every="1s")
        mirror = tmp_path / "mirror"
        code, _, err = await run_hstsync("run", "--once", "--config", str(config))
        assert code == 0, err
        assert not stale.exists()  # older than attic_keep: removed after the pass
        emu.catalogue.reprocess("o58701030_x2d.fits")  # same name, same size
        time.sleep(1.1)  # every file is now due
        code, _, err = await run_hstsync("run", "--once", "--config", str(config))
        assert code == 0, err
        path = mirror / SIX["o58701030_x2d.fits"]
        assert path.read_bytes() == emu.body(URI.format("o58701030_x2d.fits"))
        doc = status_json(tmp_path, config)
        [request] = doc["requests"]  # type: ignore[index]
        assert request["last_verify"]["found"]["changed"] == 1  # type: ignore[index]


@pytest.mark.parametrize("source", ["catalogue", "verify"])
async def test_a_replaced_file_is_told_to_the_hook_with_its_versions(
    tmp_path: Path, source: str
) -> None:
    async with Emulator(default_catalogue(), validators=False) as emu:
        hook_out = tmp_path / "hook.json"
        config = write_config(tmp_path, emu.url, download={"concurrency": 1})
        with config.open("a") as fh:
            fh.write(f'[hooks]\non_change = "cat > {hook_out}"\n')
        (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
        code, _, err = await run_hstsync("run", "--once", "--config", str(config))
        assert code == 0, err
        hook_out.unlink()
        if source == "catalogue":  # a new size: the next pass sees it in the catalogue
            emu.catalogue.reprocess("o58701010_x1d.fits", size=77760 + 2880)
            command = ["run", "--once"]
        else:  # the same size: only verify's head read sees it
            emu.catalogue.reprocess("o58701010_x1d.fits")
            command = ["verify"]

        code, _, err = await run_hstsync(*command, "--config", str(config))

        assert code == 0, err
        doc = json.loads(hook_out.read_text())
        [changed] = doc["changed"]
        assert changed["path"].endswith("o58701010_x1d.fits")
        assert "/attic/" in changed["attic"]
        # the reprocessing dated its header (the first version had no DATE card)
        assert changed["new"]["DATE"] and changed["old"].get("DATE") != changed["new"]["DATE"]
        assert changed["new_size"] == len(emu.body(URI.format("o58701010_x1d.fits")))


def test_the_primary_header_is_read_to_the_end_of_the_block_holding_its_end_card() -> None:
    def cards(*texts: bytes) -> bytes:
        return b"".join(text.ljust(80) for text in texts)

    first = cards(b"SIMPLE  =                    T", b"DATE    = '2026-12-06'", b"END")
    one_block = first.ljust(2880)
    assert primary_header(one_block + b"\0" * 100) == one_block
    assert primary_header(one_block[:2000]) is None  # cut inside its last block
    two_blocks = cards(b"SIMPLE  =                    T", *[b"COMMENT x"] * 40, b"END")
    assert primary_header(two_blocks.ljust(5760) + b"data") == two_blocks.ljust(5760)
    no_end = cards(b"SIMPLE  =                    T").ljust(2880)
    assert primary_header(no_end * 3) is None
    assert primary_header(b"\x89PNG" + one_block) is None  # not FITS
    assert keywords(one_block) == {"DATE": "2026-12-06"}
