"""The catalogue's habits at the boundary: rows → Products, pure and exhaustive.

Tables are built the way astroquery builds them from the portal's JSON
(``discovery_portal._json_to_table``), so masked cells and column types are the real
ones; the sizes of real product rows (``astroquery/mast/tests/data/products.json``)
are ints, but the column has also been seen as float and as string.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astroquery.mast.discovery_portal import _json_to_table
from hypothesis import given
from hypothesis import strategies as st

from hstsync.archive.cells import SIZE_LIMIT, parse_size, table_rows
from hstsync.archive.rows import product_from_row, products_from_rows
from hstsync.errors import CatalogueValueError

ROW: dict[str, Any] = {
    "obsID": 2003738726,
    "obs_collection": "HST",
    "obs_id": "u9o40504m",
    "productFilename": "u9o40504m_c0m.fits",
    "dataURI": "mast:HST/product/u9o40504m_c0m.fits",
    "productType": "SCIENCE",
    "dataRights": "PUBLIC",
    "description": "DADS C0M file",
    "calib_level": 2,
    "size": 1234,
}
TYPES = {
    "obsID": "int",
    "calib_level": "int",
    "size": "int",
}


def table(rows: list[dict[str, Any]], **types: str) -> Any:
    """An astropy table exactly as astroquery makes one from a portal answer."""
    kinds = TYPES | types
    fields = [{"name": name, "type": kinds.get(name, "string")} for name in ROW]
    # a JSON round trip, as on the wire: None becomes null, "\ud800" a lone surrogate
    doc = json.loads(json.dumps({"fields": fields, "data": rows}))
    return _json_to_table(doc)


def row(**changes: Any) -> dict[str, Any]:
    return ROW | changes


# -- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [1234, np.int64(1234), np.int32(1234), np.uint64(1234), 1234.0, np.float64(1234.0),
     "1234", " 1234 ", "1234.0", np.str_("1234")],
)  # fmt: skip
def test_any_integral_number_is_a_size(value: Any):
    assert parse_size(value) == 1234


@pytest.mark.parametrize("value", [None, "", "   ", np.ma.masked, math.nan, np.float32("nan")])
def test_a_missing_size_is_unknown_not_a_failure(value: Any):
    # NaN too: astroquery turns a float column's nulls into unmasked NaN
    assert parse_size(value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("nan", "not a number: 'nan'"),
        (math.inf, "not a number: inf"),
        (-math.inf, "not a number: -inf"),
        ("12abc", "not a number: '12abc'"),
        ([1234], "not a number: [1234]"),
        (True, "not a number: True"),
        (12.5, "not a whole number: 12.5"),
        (-5, "negative: -5"),
        ("-5", "negative: -5"),
        (2**63, f"too large: {2**63}"),
        (float(2**64), f"too large: {2**64}"),
        ("1\ud800", "not a number: '1\\ud800'"),
    ],
)
def test_a_size_that_is_not_a_whole_number_of_bytes_is_a_named_failure(value: Any, reason: str):
    with pytest.raises(CatalogueValueError) as caught:
        parse_size(value)
    assert str(caught.value) == f"the catalogue's size for this file is {reason}"


@given(st.integers(min_value=0, max_value=SIZE_LIMIT - 1))
def test_every_byte_count_reads_back_in_every_shape(n: int):
    assert parse_size(n) == n
    assert parse_size(str(n)) == n
    assert parse_size(f"  {n}\t") == n
    assert parse_size(np.uint64(n)) == n
    if n < 2**53:
        assert parse_size(float(n)) == n


@given(st.one_of(st.text(), st.floats(), st.integers(), st.lists(st.integers()), st.none()))
def test_parse_size_returns_a_size_or_names_the_failure(value: Any):
    try:
        size = parse_size(value)
    except CatalogueValueError as exc:
        assert str(exc).startswith("the catalogue's size for this file is ")
    else:
        assert size is None or 0 <= size < SIZE_LIMIT


# -- rows ----------------------------------------------------------------------------


def test_size_column_as_int_float_or_string_gives_the_same_product():
    shapes = [
        table([row(size=1234)]),
        table([row(size=1234.0)], size="float"),
        table([row(size="1234")], size="string"),
        table([row(size=" 1234 ")], size="char"),
    ]
    products = [product_from_row(t[0]) for t in shapes]
    assert {p.size for p in products} == {1234}
    assert {p.problem for p in products} == {None}


@pytest.mark.parametrize("size_type", ["int", "float", "string"])
def test_null_size_is_unknown_and_the_product_is_still_fetched(size_type: str):
    [product] = products_from_rows(table([row(size=None)], size=size_type))
    assert product.size is None
    assert product.problem is None


def test_one_bad_size_fails_that_product_alone():
    rows = table(
        [
            row(size="12abc"),
            row(dataURI="mast:HST/product/b.fits", productFilename="b.fits", size="99"),
        ],
        size="string",
    )
    bad, good = products_from_rows(rows)
    assert bad.problem == "the catalogue's size for this file is not a number: '12abc'"
    assert bad.size is None
    assert good.problem is None and good.size == 99


def test_infinite_size_in_a_float_column_is_a_named_failure():
    t = table([row(size=1.0)], size="float")
    t["size"][0] = np.inf
    assert product_from_row(t[0]).problem == (
        "the catalogue's size for this file is not a number: inf"
    )


@pytest.mark.parametrize(
    ("column", "name"),
    [("obs_id", "obs_id"), ("productFilename", "productFilename"),
     ("obs_collection", "obs_collection")],
)  # fmt: skip
def test_a_missing_obs_id_or_filename_fails_alone_and_never_becomes_text(column: str, name: str):
    [product] = products_from_rows(table([row(**{column: None})]))
    assert product.problem == f"the catalogue gives no {name} for this file"
    assert "--" not in (product.obs_id, product.filename, product.obs_collection)
    assert "None" not in (product.obs_id, product.filename, product.obs_collection)


def test_masked_cells_are_missing_never_dashes_or_none():
    kept = ("dataURI", "obs_id", "productFilename", "obs_collection")
    every_null = {k: None for k in ROW if k not in kept}
    [product] = products_from_rows(table([row(**every_null)]))
    text = [product.obsid, product.product_type, product.data_rights, product.description]
    assert text == ["", "", "", ""]
    assert product.calib_level is None
    assert product.size is None


def test_masked_data_rights_are_unknown_and_fetched_as_public():
    [product] = products_from_rows(table([row(dataRights=None)]))
    assert product.data_rights == ""
    assert product.is_public


def test_unencodable_text_fails_that_product_alone_and_is_kept_escaped():
    rows = table(
        [
            row(productFilename="u9o40504m_\ud800.fits"),
            row(dataURI="mast:HST/product/b.fits", productFilename="b.fits", description="\udcff"),
        ]
    )
    bad, also_bad = products_from_rows(rows)
    assert bad.problem is not None and "productFilename is not valid text" in bad.problem
    assert also_bad.problem is not None and "description is not valid text" in also_bad.problem
    for product in (bad, also_bad):
        for value in (product.filename, product.description, product.problem):
            value.encode("utf-8")  # nothing that SQLite would store as invalid UTF-8


def test_repeated_rows_collapse_to_one_product_the_first():
    first = row(obs_id="j8vg01020", productFilename="j8vg01021_drz.fits",
                dataURI="mast:HST/product/j8vg01021_drz.fits")  # fmt: skip
    repeat = first | {"obs_id": "j8vg01021"}
    other = row(dataURI="mast:HST/product/b.fits", productFilename="b.fits")
    products = products_from_rows(table([first, other, repeat, repeat]))
    assert [p.data_uri for p in products] == [first["dataURI"], other["dataURI"]]
    assert products[0].obs_id == "j8vg01020"


def test_a_repeat_with_a_usable_size_wins_over_a_broken_one():
    products = products_from_rows(table([row(size="x"), row(size="1234")], size="string"))
    assert [(p.size, p.problem) for p in products] == [(1234, None)]


def test_twins_on_one_path_get_one_owner_whatever_their_order():
    owner = row()
    twin = row(dataURI="mast:HST/product/u9o40504m/u9o40504m_c0m.fits;2")
    for rows in ([owner, twin], [twin, owner]):
        products = {p.data_uri: p for p in products_from_rows(table(rows))}
        assert products[owner["dataURI"]].problem is None
        problem = products[twin["dataURI"]].problem
        assert problem == (
            f"another product ({owner['dataURI']}) has the same path "
            "mastDownload/HST/u9o40504m/u9o40504m_c0m.fits; only that one is fetched"
        )


def test_rows_without_a_data_uri_are_left_out():
    products = products_from_rows(table([row(dataURI=None), row()]))
    assert [p.data_uri for p in products] == [ROW["dataURI"]]


def test_recorded_mast_product_rows_convert_cleanly():
    import astroquery.mast.tests as recorded

    doc = json.loads((Path(recorded.__file__).parent / "data" / "products.json").read_text())
    products = products_from_rows(_json_to_table(doc))
    assert products and all(p.problem is None for p in products)
    assert all(isinstance(p.size, int) and p.size > 0 for p in products)
    assert len({p.data_uri for p in products}) == len(products)


def test_a_table_read_column_by_column_gives_what_its_rows_give_one_by_one():
    import astroquery.mast.tests as recorded

    doc = json.loads((Path(recorded.__file__).parent / "data" / "products.json").read_text())
    quirky = table(
        [
            row(),
            row(dataURI="mast:HST/product/b.fits", productFilename="b.fits", size=None),
            row(dataURI="mast:HST/product/c.fits", productFilename="c.fits", obs_id=None),
            row(dataURI="mast:HST/product/d.fits", productFilename="d.fits", size=float("nan")),
        ],
        size="float",
    )
    for source in (_json_to_table(doc), quirky):
        one_by_one = [product_from_row(r) for r in source]
        by_column = [product_from_row(r) for r in table_rows(source)]
        assert by_column == one_by_one
