"""Manifests as docs/design.md, "Manifests" describes them: what is taken, what is
refused and why."""

from __future__ import annotations

import gc
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hstsync.archive.manifest import (
    is_manifest_name,
    parse_manifest,
    parse_manifest_bytes,
    render_manifest,
    request_name,
)
from hstsync.archive.validate import MAX_MANIFEST_BYTES, PRODUCT_COLUMNS
from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.errors import ManifestError
from hstsync.model import Request

SPEC_TOML = """\
proposal_id = 7291                 # an int, a string, or a list of them
[criteria]                         # optional: any other query_criteria key
instrument_name = ["STIS/FUV-MAMA"]
[filters]                          # optional: filter_products arguments
calib_level = [2]
productType = ["SCIENCE"]
extension = ["fits"]
mrp_only = false
"""

SPEC_JSON = """\
{
  "proposal_id": 7291,
  "criteria": {"instrument_name": ["STIS/FUV-MAMA"]},
  "filters": {"calib_level": [2], "productType": ["SCIENCE"], "extension": ["fits"],
              "mrp_only": false}
}
"""

# The demo's manifest is the tutorial's selection: it must parse to exactly that.
TUTORIAL_TOML = TUTORIAL_MANIFEST


def toml(text: str, name: str = "7291") -> Request:
    return parse_manifest_bytes(name, text.encode(), ".toml")


def as_json(doc: object, name: str = "7291") -> Request:
    return parse_manifest_bytes(name, json.dumps(doc).encode(), ".json")


def as_json_bytes(data: bytes) -> Request:
    return parse_manifest_bytes("7291", data, ".json")


def refused(text: str, match: str, *, suffix: str = ".toml", name: str = "7291") -> str:
    with pytest.raises(ManifestError, match=match) as info:
        parse_manifest_bytes(name, text.encode(), suffix)
    return str(info.value)


# -- what is taken ---------------------------------------------------------------------


def test_spec_example_parses():
    assert toml(SPEC_TOML) == Request(
        name="7291",
        proposal_ids=("7291",),
        criteria={"instrument_name": ["STIS/FUV-MAMA"]},
        filters={
            "calib_level": [2],
            "productType": ["SCIENCE"],
            "extension": ["fits"],
            "mrp_only": False,
        },
    )


def test_spec_example_as_json_is_the_same_request():
    from_json = parse_manifest_bytes("7291", SPEC_JSON.encode(), ".json")
    assert from_json == toml(SPEC_TOML)
    assert from_json.digest() == toml(SPEC_TOML).digest()


def test_tutorial_manifest_parses():
    assert toml(TUTORIAL_TOML) == Request(
        name="7291",
        proposal_ids=("7291",),
        criteria={"obs_id": ["o58701010", "o58701030"]},
        filters={"calib_level": [2], "productType": ["SCIENCE"]},
    )


def test_parse_manifest_reads_the_file_and_names_the_request(tmp_path: Path):
    path = tmp_path / "tutorial.toml"
    path.write_text(TUTORIAL_TOML, encoding="utf-8")
    request = parse_manifest(path)
    assert request.name == "tutorial" == request_name(path)
    assert request.proposal_ids == ("7291",)
    (tmp_path / "spec.json").write_text(SPEC_JSON, encoding="utf-8")
    assert parse_manifest(tmp_path / "spec.json").filters["mrp_only"] is False


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("7291", ("7291",)),
        ('"7291"', ("7291",)),
        ('" 7291 "', ("7291",)),
        ('"07291"', ("7291",)),
        ("[7291, 8000]", ("7291", "8000")),
        ('[8000, "7291", 8000, "08000"]', ("8000", "7291")),
    ],
)
def test_proposal_id_forms_are_normalised_to_digit_strings(value: str, ids: tuple[str, ...]):
    assert toml(f"proposal_id = {value}\n").proposal_ids == ids


def test_missing_tables_give_empty_criteria_and_filters():
    request = toml("proposal_id = 7291\n[criteria]\n[filters]\n")
    assert request.criteria == {} and request.filters == {}


def test_obs_collection_hst_is_accepted_and_left_implied():
    request = toml('proposal_id = 7291\n[criteria]\nobs_collection = "HST"\nobs_id = "o5*"\n')
    # resolve.py passes obs_collection="HST" itself: a second one would be a TypeError
    assert request.criteria == {"obs_id": "o5*"}
    assert toml('proposal_id = 1\n[criteria]\nobs_collection = ["HST"]\n').criteria == {}


def test_scalars_and_ranges_are_kept_as_written():
    request = toml(
        "proposal_id = 7291\n[criteria]\nt_exptime = [1000.5, 3000]\n"
        'target_name = "NGC*"\n[filters]\nsize = ">=1000"\nextension = "fits"\nmrp_only = true\n'
    )
    assert request.criteria == {"t_exptime": [1000.5, 3000], "target_name": "NGC*"}
    assert request.filters == {"size": ">=1000", "extension": "fits", "mrp_only": True}


def test_a_byte_order_mark_is_tolerated():
    assert toml("\ufeffproposal_id = 7291\n").proposal_ids == ("7291",)
    assert as_json_bytes(b'\xef\xbb\xbf{"proposal_id": "7291"}').proposal_ids == ("7291",)


# -- what is refused, and the words used -------------------------------------------------


def test_proposal_id_that_is_not_a_number_is_refused_by_name():
    message = refused('proposal_id = "abc"\n', "proposal_id")
    assert message == (
        "7291.toml: proposal_id must be a number like 7291 or a list of them, got 'abc'"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("true", "true"),
        ("0", "0"),
        ("-7291", "-7291"),
        ("1.5", "1.5"),
        ('"7291a"', "'7291a'"),
        ('""', "''"),
        ('"٧٢٩١"', "'٧٢٩١'"),  # Arabic-Indic digits are not an archive id
        ("12345678901", "12345678901"),
        ("[7291, [8000]]", "a list"),
        ("{ id = 1 }", "a table"),
        ("1979-05-27", "a date"),
    ],
)
def test_bad_proposal_ids_are_refused(value: str, shown: str):
    refused(f"proposal_id = {value}\n", f"proposal_id must be a number .*, got {shown}$")


def test_bool_is_not_a_proposal_in_json_either():
    with pytest.raises(ManifestError, match="got true"):
        as_json({"proposal_id": True})
    with pytest.raises(ManifestError, match="got null"):
        as_json({"proposal_id": [7291, None]})


def test_empty_proposal_list_is_refused():
    refused("proposal_id = []\n", "proposal_id is an empty list")


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_empty_manifest_says_proposal_id_is_required(text: str):
    assert refused(text, "empty") == "7291.toml: empty manifest: proposal_id is required"
    json_text = "{}" if text.startswith("#") else text  # JSON has no comments
    refused(json_text, "empty manifest: proposal_id is required", suffix=".json")


def test_proposal_id_after_a_table_header_is_explained():
    refused("[criteria]\nproposal_id = 7291\n", "proposal_id must come first, before")
    refused('[filters]\nproductType = "SCIENCE"\n', "proposal_id is required")


def test_invalid_toml_names_the_line():
    message = refused("proposal_id = 7291\n\nbroken = = 3\n", "not valid TOML")
    assert message.startswith("7291.toml: not valid TOML: line 3, column")
    refused("proposal_id = [7291,\n", "not valid TOML: ")


def test_invalid_json_names_the_line():
    message = refused('{\n "proposal_id": 7291,\n}', "not valid JSON", suffix=".json")
    assert message.startswith("7291.json: not valid JSON: line 3, column 1:")


def test_json_duplicate_keys_are_refused_like_toml():
    refused('{"proposal_id": 1, "proposal_id": 2}', "'proposal_id' appears twice", suffix=".json")
    refused("proposal_id = 1\nproposal_id = 2\n", "not valid TOML")


def test_json_top_level_must_be_an_object():
    refused("[7291]", r"expected an object \{...\} at the top, got a list", suffix=".json")
    refused("7291", "at the top, got 7291", suffix=".json")


def test_larger_than_the_cap_is_not_a_manifest():
    text = "proposal_id = 7291\n" + "#" * MAX_MANIFEST_BYTES + "\n"
    assert refused(text, "64 KiB") == "7291.toml: larger than 64 KiB — not a manifest"


def test_parse_manifest_reads_no_more_than_the_cap(tmp_path: Path):
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.write(b'{"proposal_id": 7291, "x": "')
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MiB, cheap
    with pytest.raises(ManifestError, match=r"huge\.json: larger than 64 KiB"):
        parse_manifest(path)


@pytest.mark.parametrize(
    "data", [b"\x89PNG\r\n\x1a\n\x00\x00", b"proposal_id = 7291\n\xff\xfe", b"\x00"]
)
def test_binary_is_not_utf8_text(data: bytes):
    for suffix in (".toml", ".json"):
        with pytest.raises(ManifestError, match=r"not UTF-8 text \(binary file\?\)"):
            parse_manifest_bytes("7291", data, suffix)


@pytest.mark.parametrize(
    "text",
    [
        "proposal_id = 7291\n[criteria]\nobs_id = " + "[" * 5000 + "]" * 5000 + "\n",
        "proposal_id = 7291\nx = " + "{ a = " * 3000 + "1" + " }" * 3000 + "\n",
    ],
)
def test_deep_nesting_in_toml_is_refused_not_a_crash(text: str):
    refused(text, "nested too deeply")


def test_deep_nesting_in_json_is_refused_not_a_crash():
    refused(
        '{"proposal_id": ' + "[" * 20000 + "]" * 20000 + "}", "nested too deeply", suffix=".json"
    )
    refused('{"a":' * 10000 + "1" + "}" * 10000, "nested too deeply", suffix=".json")


def test_numbers_of_thousands_of_digits_are_refused():
    refused("proposal_id = " + "7" * 5000 + "\n", "not valid TOML: a number is far too long")
    refused('{"proposal_id": ' + "7" * 5000 + "}", "not valid JSON", suffix=".json")
    # hexadecimal has no digit limit in int(): the value itself is refused
    refused("proposal_id = 0x" + "f" * 5000 + "\n", "got a number far too large")
    refused(
        "proposal_id = 1\n[filters]\nsize = 0x" + "f" * 5000 + "\n", "got a number far too large"
    )


def test_unknown_top_level_key_is_refused_by_name():
    assert refused("proposal_id = 7291\nproposals = 3\n", "unknown key") == (
        "7291.toml: unknown key 'proposals' (a manifest holds proposal_id, [criteria] and "
        "[filters]); did you mean 'proposal_id'?"
    )
    refused('proposal_id = 1\ninstrument_name = "STIS"\n', "put it under \\[criteria\\]")
    refused('proposal_id = 1\nproductType = "SCIENCE"\n', "productType belongs under \\[filters\\]")
    refused('proposal_id = 1\n"a b" = 1\n', "unknown key 'a b'")


def test_tables_must_be_tables():
    refused('proposal_id = 1\ncriteria = ["x"]\n', r"\[criteria\] must be a table .*got a list")
    refused('{"proposal_id": 1, "filters": 3}', r"\[filters\] must be a table", suffix=".json")


def test_proposal_id_inside_criteria_is_refused():
    refused(
        "proposal_id = 1\n[criteria]\nproposal_id = 2\n",
        r"\[criteria\] proposal_id: give proposal_id at the top",
    )


@pytest.mark.parametrize("key", ["coordinates", "objectname", "radius"])
def test_positional_criteria_are_refused(key: str):
    message = refused(f'proposal_id = 1\n[criteria]\n{key} = "M31"\n', rf"\[criteria\] {key}:")
    assert "name resolver" in message


@pytest.mark.parametrize("key", ["pagesize", "page", "resolver"])
def test_query_options_are_not_criteria(key: str):
    refused(f"proposal_id = 1\n[criteria]\n{key} = 5\n", "not a query criterion")


def test_obs_collection_other_than_hst_or_jwst_is_refused():
    message = refused(
        'proposal_id = 1\n[criteria]\nobs_collection = "TESS"\n',
        r"\[criteria\] obs_collection: hstsync mirrors 'HST' or 'JWST' programs",
    )
    assert message.endswith("got 'TESS'")
    refused("proposal_id = 1\n[criteria]\nobs_collection = 7\n", "mirrors 'HST' or 'JWST'")
    refused(
        'proposal_id = 1\n[criteria]\nobs_collection = ["HST", "JWST"]\n',
        "one collection per manifest",
    )


def test_obs_collection_jwst_names_the_requests_collection():
    request = toml('proposal_id = 1345\n[criteria]\nobs_collection = "JWST"\nobs_id = "jw*"\n')
    assert request.collection == "JWST" and request.criteria == {"obs_id": "jw*"}
    assert toml('proposal_id = 1\n[criteria]\nobs_collection = ["jwst"]\n').collection == "JWST"
    # a JWST request is another request than the HST one of the same number
    assert request.digest() != toml('proposal_id = 1345\n[criteria]\nobs_id = "jw*"\n').digest()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("obs_id = []", r"\[criteria\] obs_id: an empty list matches nothing"),
        ("obs_id = [[1]]", r"\[criteria\] obs_id: expected a string, .* got a list"),
        ("obs_id = { a = 1 }", "got a table"),
        ("obs_id = true", "got true"),
        ("obs_id = nan", "got nan"),
        ("obs_id = inf", "got inf"),
        ("t_min = 1979-05-27T07:32:00Z", "got a datetime"),
        ("obs_id = 9223372036854775808", "got 9223372036854775808"),
        ('"bad key" = 1', r"\[criteria\] 'bad key' is not a criterion name"),
    ],
)
def test_bad_criteria_values_are_refused_with_the_key(line: str, match: str):
    refused(f"proposal_id = 1\n[criteria]\n{line}\n", match)


def test_product_columns_are_the_documented_ones():
    assert len(PRODUCT_COLUMNS) == 20
    assert {
        "productType",
        "calib_level",
        "productSubGroupDescription",
        "filters",
    } <= PRODUCT_COLUMNS


def test_unknown_filter_column_suggests_the_real_one():
    message = refused('proposal_id = 1\n[filters]\nproductTyp = "SCIENCE"\n', "not a product")
    assert message == (
        "7291.toml: [filters] 'productTyp' is not a product column; did you mean 'productType'?"
    )
    refused('proposal_id = 1\n[filters]\nproducttype = "SCIENCE"\n', "did you mean 'productType'")
    refused("proposal_id = 1\n[filters]\nmrp_olny = true\n", "did you mean 'mrp_only'")
    message = refused('proposal_id = 1\n[filters]\ninstrument_name = "X"\n', "not a product")
    assert "calib_level" in message and "belong under [criteria]" in message


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('mrp_only = "yes"', r"\[filters\] mrp_only: expected true or false, got 'yes'"),
        ("mrp_only = 1", "mrp_only: expected true or false, got 1"),
        ("extension = 3", r'\[filters\] extension: expected a file extension like "fits"'),
        ('extension = ["fits", 3]', "extension: .* got 3"),
        ('extension = ""', "extension: .* got ''"),
        ("extension = []", "extension: an empty list"),
        ("calib_level = [2, [3]]", r"\[filters\] calib_level: .* got a list"),
        ("calib_level = []", "calib_level: an empty list"),
    ],
)
def test_bad_filter_values_are_refused_with_the_key(line: str, match: str):
    refused(f"proposal_id = 1\n[filters]\n{line}\n", match)


def test_json_lone_surrogates_are_not_text():
    with pytest.raises(ManifestError, match="obs_id: expected a string"):
        parse_manifest_bytes("x", b'{"proposal_id": 1, "criteria": {"obs_id": "\\ud800"}}', ".json")


@pytest.mark.parametrize(
    "name", ["a b", "../up", ".hidden", "", "x" * 101, "tab\tname", "naïve", "a/b", "."]
)
def test_request_name_must_be_a_safe_path_component(name: str):
    with pytest.raises(ManifestError, match="cannot be a request name"):
        parse_manifest_bytes(name, b"proposal_id = 1\n", ".toml")


def test_long_safe_names_are_fine():
    assert toml("proposal_id = 1\n", name="a.b_c-D9" + "x" * 92).name.endswith("x")


def test_suffix_must_be_toml_or_json():
    refused("proposal_id: 1\n", "not a manifest", suffix=".yaml")
    assert toml("proposal_id = 1\n") == parse_manifest_bytes("7291", b"proposal_id = 1", ".TOML")


def test_unreadable_and_non_regular_files_are_manifest_errors(tmp_path: Path):
    with pytest.raises(ManifestError, match=r"gone\.toml: cannot read \(No such file"):
        parse_manifest(tmp_path / "gone.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(
        ManifestError, match=r"dir\.toml: refused: not a regular file \(a directory\)"
    ):
        parse_manifest(tmp_path / "dir.toml")
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(ManifestError, match=r"pipe\.toml: refused: not a regular file \(a FIFO\)"):
        parse_manifest(fifo)  # must not block waiting for a writer


def test_undecodable_file_names_give_writable_messages(tmp_path: Path):
    name = os.fsdecode(b"caf\xe9.toml")
    path = tmp_path / name
    path.write_text("proposal_id = 1\n")
    with pytest.raises(ManifestError) as info:
        parse_manifest(path)
    str(info.value).encode("utf-8")  # no lone surrogates: it can go into NAME.error.txt


# -- which files are manifests ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("7291.toml", True),
        ("7291.json", True),
        ("my-program.v2.toml", True),
        ("UPPER.TOML", True),
        ("7291.toml.tmp", False),
        ("7291.json.tmp", False),
        ("7291.tmp", False),
        (".7291.toml", False),
        (".toml", False),
        ("7291.yaml", False),
        ("7291.toml~", False),
        ("7291.error.txt", False),
        ("toml", False),
    ],
)
def test_is_manifest_name(name: str, expected: bool):
    assert is_manifest_name(name) is expected


def test_request_name_is_the_stem():
    assert request_name(Path("/r/7291.toml")) == "7291"
    assert request_name(Path("/r/a.b.json")) == "a.b"


# -- writing (hstsync add) ---------------------------------------------------------------


def test_render_round_trips_the_spec_example():
    request = toml(SPEC_TOML)
    text = render_manifest(request)
    assert text.startswith("proposal_id = 7291\n")
    assert toml(text) == request


def test_render_writes_lists_and_escapes_strings():
    request = Request(
        "multi",
        ("7291", "8000"),
        criteria={"target_name": 'quote " back \\ tab \t nl \n del \x7f é', "t_min": -0.0},
        filters={"mrp_only": True, "size": [1, ">=2"]},
    )
    text = render_manifest(request)
    assert "proposal_id = [7291, 8000]" in text
    assert toml(text, name="multi") == request


def test_render_refuses_what_parse_would_refuse():
    with pytest.raises(ManifestError, match="cannot be a request name"):
        render_manifest(Request("../x", ("1",)))
    with pytest.raises(ManifestError, match="coordinates"):
        render_manifest(Request("x", ("1",), criteria={"coordinates": "10 20"}))
    with pytest.raises(ManifestError, match="cannot write"):
        render_manifest(Request("x", ("1",), criteria={"obs_id": object()}))
    with pytest.raises(ManifestError, match="proposal_id is an empty list"):
        render_manifest(Request("x", ()))


# -- nothing but a Request or a ManifestError ------------------------------------------

MODEST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_request_or_manifest_error(name: str, data: bytes, suffix: str) -> None:
    try:
        request = parse_manifest_bytes(name, data, suffix)
    except ManifestError as exc:
        assert str(exc)
        str(exc).encode("utf-8")
    else:
        assert isinstance(request, Request) and request.proposal_ids
        request.digest()


@MODEST
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".toml", ".json"]))
def test_arbitrary_bytes_give_a_request_or_a_manifest_error(data: bytes, suffix: str):
    only_request_or_manifest_error("fuzz", data, suffix)


@MODEST
@given(text=st.text(max_size=1024), suffix=st.sampled_from([".toml", ".json"]))
def test_arbitrary_text_gives_a_request_or_a_manifest_error(text: str, suffix: str):
    only_request_or_manifest_error("fuzz", text.encode("utf-8", "surrogatepass"), suffix)


@MODEST
@given(
    lines=st.lists(
        st.sampled_from(
            [
                "proposal_id = 7291",
                'proposal_id = ["7291", 8000]',
                "[criteria]",
                "[filters]",
                'obs_id = ["o58701010"]',
                "calib_level = [2]",
                "mrp_only = true",
                "extension = 3",
                "coordinates = 1",
                "x = [[[[1]]]]",
                "[[criteria]]",
                "a.b.c = 1",
                "",
            ]
        ),
        max_size=12,
    )
)
def test_toml_line_soup_gives_a_request_or_a_manifest_error(lines: list[str]):
    only_request_or_manifest_error("soup", "\n".join(lines).encode(), ".toml")


KEYS = st.sampled_from(
    ["proposal_id", "criteria", "filters", "obs_id", "mrp_only", "extension", "calib_level"]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.integers(min_value=-(10**40), max_value=10**40)
)
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=40,
)


def deeply_nested(depth: int, leaf: object) -> object:
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"criteria": leaf}
    return leaf


@MODEST
@given(
    doc=st.dictionaries(KEYS, STRUCTURES, max_size=5)
    | STRUCTURES
    | st.builds(deeply_nested, st.integers(900, 3000), STRUCTURES)
)
def test_generated_structures_as_json_give_a_request_or_a_manifest_error(doc: Any):
    # Deep documents run json near the recursion limit: a garbage collection there
    # would run other objects' finalizers with no stack left (an unraisable
    # RecursionError that has nothing to do with manifests), so collect first and not
    # during.
    gc.collect()
    gc.disable()
    try:
        try:
            data = json.dumps(doc).encode()
        except (ValueError, RecursionError):  # a value json itself cannot write
            return
        only_request_or_manifest_error("gen", data, ".json")
    finally:
        gc.enable()


@MODEST
@given(
    proposal=STRUCTURES,
    criteria=st.dictionaries(st.text(max_size=10), STRUCTURES, max_size=4),
    filters=st.dictionaries(
        st.sampled_from(sorted(PRODUCT_COLUMNS | {"mrp_only", "extension"})), STRUCTURES, max_size=4
    ),
)
def test_generated_manifests_with_the_right_keys_give_a_request_or_an_error(
    proposal: Any, criteria: Any, filters: Any
):
    doc = {"proposal_id": proposal, "criteria": criteria, "filters": filters}
    try:
        data = json.dumps(doc).encode()
    except ValueError:
        return
    only_request_or_manifest_error("gen", data, ".json")


# -- valid requests round-trip ---------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}", fullmatch=True)
PROPOSALS = st.lists(st.integers(1, 99_999).map(str), min_size=1, max_size=4, unique=True).map(
    tuple
)
VALUE_SCALARS = (
    st.text(max_size=20).filter(lambda s: "\x00" not in s)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)
VALUES = VALUE_SCALARS | st.lists(VALUE_SCALARS, min_size=1, max_size=4)
REFUSED_CRITERIA = {"proposal_id", "obs_collection", "coordinates", "objectname", "radius"}
REFUSED_CRITERIA |= {"pagesize", "page", "resolver"}
CRITERION_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
    lambda k: k not in REFUSED_CRITERIA
)
EXTENSIONS = st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s)


@st.composite
def filter_tables(draw: st.DrawFn) -> dict[str, Any]:
    table: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(sorted(PRODUCT_COLUMNS)), VALUES, max_size=4)
    )
    if draw(st.booleans()):
        table["mrp_only"] = draw(st.booleans())
    if draw(st.booleans()):
        table["extension"] = draw(EXTENSIONS | st.lists(EXTENSIONS, min_size=1, max_size=3))
    return table


VALID_REQUESTS = st.builds(
    Request,
    name=NAMES.filter(lambda n: n not in {".", ".."}),
    proposal_ids=PROPOSALS,
    criteria=st.dictionaries(CRITERION_NAMES, VALUES, max_size=4),
    filters=filter_tables(),
)


@MODEST
@given(request=VALID_REQUESTS)
def test_valid_requests_round_trip_through_render(request: Request):
    text = render_manifest(request)
    again = parse_manifest_bytes(request.name, text.encode("utf-8"), ".toml")
    assert again == request
    assert again.digest() == request.digest()
    # floats come back exactly, including -0.0
    for key, value in request.criteria.items():
        if isinstance(value, float):
            assert math.copysign(1, again.criteria[key]) == math.copysign(1, value)
