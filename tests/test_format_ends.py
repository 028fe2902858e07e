"""Files without FITS sums: a file cut short is caught by its format's end, and one whose
format cannot tell is not taken when the server's length differs from the catalogue's.

Each test runs a real transfer against the emulator and checks what lands (nothing, for
a file that is not whole) and why the product failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import Naps

from hstsync.config import DownloadConfig
from hstsync.emulator import BodyStyle, Emulator, Fault, FaultKind
from hstsync.formats import verdict
from hstsync.model import ProductState
from hstsync.transfer import Downloader, Outcome, Transfer, open_session, part_path

CFG = DownloadConfig(retries=3, timeout=2.0, backoff=0.01, backoff_max=0.02, segment_min=0)
OBS = "o58701010"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


async def fetch(emu: Emulator, name: str, catalogue_size: int, root: Path) -> Outcome:
    transfer = Transfer(
        url=f"{emu.url}/api/v0.1/Download/file?uri=mast:HST/product/{name}",
        dest=root / "mastDownload" / "HST" / OBS / name,
        size=catalogue_size,
        label=name,
        root=root,
    )
    async with open_session(CFG) as session:
        return await Downloader(session, CFG, sleep=Naps()).fetch(transfer)


def test_the_emulators_preview_is_a_whole_jpeg_and_its_cut_is_not(emu: Emulator) -> None:
    emu.catalogue.add_product(OBS, "p_drc.jpg", 4321, style=BodyStyle.JPEG)
    body = emu.body("mast:HST/product/p_drc.jpg")
    assert verdict("p_drc.jpg", body).whole is True
    assert verdict("p_drc.jpg", body[:2880]).whole is False


async def test_a_jpeg_cut_to_2880_bytes_by_the_server_is_never_done(
    emu: Emulator, tmp_path: Path
) -> None:
    # the server states and sends 2,880 bytes of a 4,321-byte preview: the size it
    # promised is there, the catalogue's is not, and the JPEG has no end
    emu.catalogue.add_product(OBS, "cut_drc.jpg", 4321, style=BodyStyle.JPEG)
    emu.faults.add(Fault(FaultKind.WRONG_SIZE, match="cut_drc.jpg", after=-1441, times=None))

    outcome = await fetch(emu, "cut_drc.jpg", 4321, tmp_path)

    assert outcome.state is ProductState.FAILED
    assert outcome.error is not None and "JPEG" in outcome.error
    dest = tmp_path / "mastDownload" / "HST" / OBS / "cut_drc.jpg"
    assert not dest.exists()


async def test_a_jpeg_cut_once_is_fetched_again_whole(emu: Emulator, tmp_path: Path) -> None:
    emu.catalogue.add_product(OBS, "once_drc.jpg", 4321, style=BodyStyle.JPEG)
    emu.faults.add(Fault(FaultKind.WRONG_SIZE, match="once_drc.jpg", after=-1441, times=1))

    outcome = await fetch(emu, "once_drc.jpg", 4321, tmp_path)

    assert outcome.state is ProductState.DONE and outcome.attempts == 2
    dest = tmp_path / "mastDownload" / "HST" / OBS / "once_drc.jpg"
    assert dest.read_bytes() == emu.body("mast:HST/product/once_drc.jpg")


async def test_a_file_no_format_can_check_is_refused_when_the_server_and_catalogue_disagree(
    emu: Emulator, tmp_path: Path
) -> None:
    # 5,000 bytes served where the catalogue says 6,000: nothing tells a cut answer
    # from the whole file, so it is tried once more and then not accepted
    emu.catalogue.add_product(OBS, "notes.dat", 5000, style=BodyStyle.JPEG)

    outcome = await fetch(emu, "notes.dat", 6000, tmp_path)

    assert outcome.state is ProductState.FAILED and outcome.attempts == 2
    assert outcome.error is not None
    assert "catalogue says 6,000 bytes, the server sent 5,000" in outcome.error
    assert "cannot be checked by its format" in outcome.error
    assert "hstsync retry" in outcome.error
    dest = tmp_path / "mastDownload" / "HST" / OBS / "notes.dat"
    assert not dest.exists() and not part_path(dest).exists()


async def test_a_file_no_format_can_check_is_taken_at_the_catalogues_size(
    emu: Emulator, tmp_path: Path
) -> None:
    emu.catalogue.add_product(OBS, "agreed.dat", 5000, style=BodyStyle.JPEG)

    outcome = await fetch(emu, "agreed.dat", 5000, tmp_path)

    assert outcome.state is ProductState.DONE and outcome.attempts == 1
