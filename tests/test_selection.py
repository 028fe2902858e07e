"""A request that selects nothing is not done (issue #24, bug 1).

``filter_products`` is exact and case-sensitive in the astroquery we pin, so a value in
the wrong case or one no product has keeps nothing. Such a request is ``incomplete``,
exits 1, and its ``last_error`` says which filter kept none of how many products, which
values the archive has, and the close one where there is one; criteria that match no
observation say the same of the observations.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from helpers import recording_hook, told

from hstsync.archive.selection import Sieve
from hstsync.cli.commands import main
from hstsync.config import Config, HooksConfig, for_directory
from hstsync.emulator import Emulator, run_in_thread
from hstsync.model import RequestState
from hstsync.service.daemon import run_once
from hstsync.store.db import Store

#: the product rows the emulator's proposal 7291 lists (``hstsync emulator`` says 53)
ROWS_7291 = 53


@pytest.fixture
def config(tmp_path: Path, emulator: Emulator) -> Config:
    cfg = for_directory(tmp_path, server=emulator.url, backoff=0.01, backoff_max=0.02)
    cfg.paths.requests.mkdir()
    return cfg


def request(config: Config, name: str, text: str) -> None:
    (config.paths.requests / f"{name}.toml").write_text(f"proposal_id = 7291\n{text}")


def row(config: Config, name: str) -> tuple[RequestState, str]:
    with Store.open_readonly(config.paths.database) as store:
        found = store.get_request(name)
    assert found is not None
    return found.state, found.last_error or ""


async def test_a_filter_value_in_the_wrong_case_is_incomplete_and_names_the_right_one(
    config: Config,
):
    request(config, "sci", '[filters]\nproductType = ["science"]\n')

    assert await run_once(config) == 1

    state, error = row(config, "sci")
    assert state is RequestState.INCOMPLETE
    assert error == (
        f"the filters left none of the {ROWS_7291} products of proposal 7291: "
        'productType = ["science"] matches none '
        '(productType here: AUXILIARY, PREVIEW, SCIENCE; did you mean "SCIENCE"?)'
    )


async def test_a_calib_level_no_product_has_names_the_levels_there(config: Config):
    request(config, "cal7", "[filters]\ncalib_level = [7]\n")

    assert await run_once(config) == 1

    state, error = row(config, "cal7")
    assert state is RequestState.INCOMPLETE
    assert error.endswith("calib_level = [7] matches none (calib_level here: 1, 2)")
    assert "lists no products" not in error


async def test_filters_that_keep_nothing_together_are_named_together(config: Config):
    request(config, "both", '[filters]\ncalib_level = [2]\nproductType = ["AUXILIARY"]\n')

    assert await run_once(config) == 1

    state, error = row(config, "both")
    assert state is RequestState.INCOMPLETE
    assert 'no product has calib_level = [2] and productType = ["AUXILIARY"] at once' in error
    assert "(calib_level here: 1, 2; productType here: AUXILIARY, PREVIEW, SCIENCE)" in error


async def test_an_instrument_the_proposal_lacks_suggests_its_names_and_a_wildcard_that_works(
    config: Config,
):
    assert main(["add", "7291", "--name", "stis", "--instrument", "STIS", *at(config)]) == 0

    assert await run_once(config) == 1

    state, error = row(config, "stis")
    assert state is RequestState.INVALID
    assert error == (
        'proposal 7291 has 5 HST observations, none with instrument_name = ["STIS"] '
        '(instrument_name here: STIS/CCD, STIS/FUV-MAMA; did you mean "STIS/CCD" or "STIS*"?)'
    )

    # the wildcard suggested is one the archive takes
    request(config, "stis", '[criteria]\ninstrument_name = ["STIS*"]\n')
    assert await run_once(config) == 0
    assert row(config, "stis")[0] is RequestState.DONE


def at(config: Config) -> list[str]:
    """``--config FILE`` for ``config``, written out."""
    path = config.paths.requests.parent / "config.toml"
    path.write_text(
        f'[paths]\nrequests = "{config.paths.requests}"\nmirror = "{config.paths.mirror}"\n'
        f'database = "{config.paths.database}"\n[mast]\nserver = "{config.mast.server}"\n'
    )
    return ["--config", str(path)]


def test_plan_of_filters_that_keep_nothing_says_why_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with run_in_thread() as served:  # plan blocks: the archive answers from a thread
        config = for_directory(tmp_path, server=served.url)
        config.paths.requests.mkdir()
        request(config, "sci", '[filters]\nproductType = ["science"]\n')

        assert main(["plan", "sci", *at(config)]) == 1

    err = capsys.readouterr().err
    assert "nothing to mirror: the filters left none of the 53 products" in err
    assert 'did you mean "SCIENCE"?' in err


async def test_a_request_that_selects_nothing_is_told_to_the_hook_once(config: Config):
    out = config.paths.requests.parent / "calls.jsonl"
    hook = recording_hook(config.paths.requests.parent, out)
    config = replace(config, hooks=HooksConfig(on_change=hook))
    request(config, "cal7", "[filters]\ncalib_level = [7]\n")

    assert await run_once(config) == 1
    assert await run_once(config) == 1  # the same reason: not worth telling again

    [doc] = told(out)
    assert doc["state"] == "incomplete"
    [failure] = doc["failures"]
    assert failure["reason"].endswith("calib_level = [7] matches none (calib_level here: 1, 2)")


def test_a_proposal_whose_observations_list_no_products_says_so_and_blames_no_filter():
    sieve = Sieve({"calib_level": [2]})

    assert sieve.why_none(("7291",)) == (
        "the archive lists no products for the observations of proposal 7291"
    )
