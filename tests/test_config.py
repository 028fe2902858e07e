"""Configuration as docs/design.md, "Configuration" describes it: the example documents
it, typos are named."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hstsync.config import (
    SYSTEM_CONFIG,
    Config,
    candidate_paths,
    for_directory,
    load_config,
    parse_config,
    parse_duration,
    read_config,
)
from hstsync.config import load as config_load
from hstsync.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"

MINIMAL = """\
[paths]
requests = "/r"
mirror = "/m"
database = "/d/hstsync.db"
"""


def parse(text: str, base: Path = Path("/base")) -> Config:
    return parse_config(tomllib.loads(text), base=base)


def refused(text: str, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        parse(text)
    return str(info.value)


def sections() -> dict[str, type[Any]]:
    """Every table of the file: the fields of Config that are themselves dataclasses."""
    hints = typing.get_type_hints(Config)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(Config)
        if dataclasses.is_dataclass(hints[f.name])
    }


# -- config.example.toml is the documentation ------------------------------------------


def test_example_file_parses_to_specs_values():
    cfg = read_config(EXAMPLE)
    assert cfg.paths.requests == Path("/var/lib/hstsync/requests")
    assert cfg.paths.mirror == Path("/srv/hst")
    assert cfg.paths.database == Path("/var/lib/hstsync/hstsync.db")
    assert cfg.mast.server == "https://mast.stsci.edu"
    assert cfg.mast.token_file is None
    assert cfg.download.concurrency == 8
    assert cfg.download.retries == 5
    assert cfg.download.timeout == 600
    assert cfg.download.backoff == 1.0
    assert cfg.download.backoff_max == 120
    assert cfg.schedule.resync_every == 24 * 3600
    assert cfg.status.listen == "" and cfg.status.address is None
    assert cfg.source == EXAMPLE


def test_example_documents_every_key_of_every_config_dataclass():
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(sections()) == {"paths", "mast", "download", "schedule", "status", "hooks"}
    for table, cls in sections().items():
        assert table in doc, f"[{table}] missing from config.example.toml"
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(doc[table]) == names, f"[{table}] of the example differs from {cls.__name__}"


def test_example_comments_every_key_on_the_line_above():
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            assert lines[number - 1].startswith("# "), f"no comment above {line!r}"


def test_example_defaults_are_the_dataclass_defaults():
    """A value the example shows for an optional key is what leaving it out gives."""
    example = read_config(EXAMPLE)
    defaults = parse(MINIMAL)
    for table in ("mast", "download", "schedule", "status", "hooks"):
        assert getattr(example, table) == getattr(defaults, table)


# -- refusals name the key ---------------------------------------------------------------


def test_unknown_key_is_named_with_its_table_and_a_hint():
    message = refused(MINIMAL + "[download]\nconcurency = 4\n", "download.concurency")
    assert "did you mean 'concurrency'?" in message
    refused(MINIMAL + "[mirror]\nx = 1\n", "unknown key 'mirror'")
    refused(MINIMAL.replace("mirror =", "miror ="), "unknown key 'paths.miror'")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[download]\nconcurrency = "8"', "download.concurrency: expected an integer, got '8'"),
        ("[download]\nconcurrency = 0", "download.concurrency: must be at least 1"),
        ("[download]\nconcurrency = true", "download.concurrency: expected an integer"),
        ("[download]\nretries = 1.5", "download.retries: expected an integer"),
        ("[download]\nretries = -1", "download.retries: must be at least 0"),
        ('[download]\ntimeout = "10m"', "download.timeout: expected a number of seconds"),
        ("[download]\ntimeout = 0", "download.timeout: must be greater than zero"),
        ("[download]\ntimeout = nan", "download.timeout: must be greater than zero and finite"),
        ("[download]\nbackoff_max = inf", "download.backoff_max: must be .* finite"),
        ("[download]\ntimeout = 0x" + "f" * 400, "download.timeout: must be .* finite"),
        ("[schedule]\nresync_every = 0x" + "f" * 400, "schedule.resync_every: must be .* finite"),
        ("[mast]\nserver = 5", "mast.server: expected a URL string"),
        ("[mast]\ntoken_file = 5", "mast.token_file: expected a path"),
        ("[mast]\ntoken_file = false", "mast.token_file: expected a path string"),
        ("[schedule]\nresync_every = [1]", "schedule.resync_every: expected a duration"),
        ("[schedule]\nresync_every = true", "schedule.resync_every: expected a duration"),
        ("[schedule]\nresync_every = nan", "schedule.resync_every: must be longer than zero"),
    ],
)
def test_wrong_type_names_the_key(text: str, match: str):
    refused(MINIMAL + text + "\n", match)


def test_a_section_must_be_a_table():
    with pytest.raises(ConfigError, match=r"download: expected a table \[download\]"):
        parse('download = "fast"\n' + MINIMAL)


@pytest.mark.parametrize("missing", ["requests", "mirror", "database"])
def test_missing_paths_keys_are_named(missing: str):
    text = "\n".join(line for line in MINIMAL.splitlines() if not line.startswith(missing))
    refused(text, f"paths.{missing}: missing")


def test_no_paths_table_at_all_names_the_first_missing_key():
    refused("[download]\nconcurrency = 2\n", "paths.requests: missing")


@pytest.mark.parametrize(
    "value", ["", '"   "', "3", "[]"], ids=["empty", "blank", "number", "list"]
)
def test_a_path_must_be_a_non_empty_string(value: str):
    refused(MINIMAL.replace('"/m"', value or '""'), "paths.mirror: expected a path")


def test_unknown_home_directory_is_a_config_error():
    refused(MINIMAL.replace('"/m"', '"~no-such-user-hstsync/m"'), "paths.mirror: cannot expand")


def test_home_and_other_variables_in_paths_are_expanded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", "/home/alice")
    monkeypatch.setenv("HST_DATA", "/data/hst")
    cfg = parse(
        MINIMAL.replace('"/m"', '"$HOME/hst/mirror"')
        .replace('"/r"', '"${HST_DATA}/requests"')
        .replace('"/d/hstsync.db"', '"~/hstsync.db"')
    )
    assert cfg.paths.mirror == Path("/home/alice/hst/mirror")
    assert cfg.paths.requests == Path("/data/hst/requests")
    assert cfg.paths.database == Path("/home/alice/hstsync.db")


def test_a_variable_that_is_not_set_is_a_config_error_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("HSTSYNC_NO_SUCH_VARIABLE", raising=False)
    refused(
        MINIMAL.replace('"/m"', '"$HSTSYNC_NO_SUCH_VARIABLE/m"'),
        r"paths.mirror: \$HSTSYNC_NO_SUCH_VARIABLE in .* is not set",
    )


def test_a_tilde_in_hstsync_config_is_the_home_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "hst.toml").write_text(MINIMAL.replace('"/m"', '"/from-home"'))

    assert load_config(None, {"HSTSYNC_CONFIG": "~/hst.toml"}).paths.mirror == Path("/from-home")


@pytest.mark.parametrize(
    "server",
    [
        "mast.stsci.edu",
        "ftp://mast.stsci.edu",
        "https://",
        "https://mast.stsci.edu/?q=1",
        "https://mast.stsci.edu/#top",
        "http://[::1",
        "https://mast.stsci.edu:99999",
        "https://mast.stsci.edu:port",
    ],
)
def test_bad_server_url_is_refused(server: str):
    refused(MINIMAL + f'[mast]\nserver = "{server}"\n', "mast.server: ")


def test_server_keeps_host_port_and_path_without_trailing_slash():
    cfg = parse(MINIMAL + '[mast]\nserver = "http://127.0.0.1:8123/mast/"\n')
    assert cfg.mast.server == "http://127.0.0.1:8123/mast"


# -- the status endpoint ---------------------------------------------------------------


def test_status_endpoint_is_off_by_default():
    assert parse(MINIMAL).status.address is None
    assert parse(MINIMAL + '[status]\nlisten = ""\n').status.address is None


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:8470", ("127.0.0.1", 8470)),
        ("[::1]:8470", ("::1", 8470)),
        ("localhost:9000", ("localhost", 9000)),
        ("0.0.0.0:8470", ("0.0.0.0", 8470)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_status_listen_is_host_and_port(listen: str, address: tuple[str, int]):
    assert parse(MINIMAL + f'[status]\nlisten = "{listen}"\n').status.address == address


@pytest.mark.parametrize(
    ("listen", "match"),
    [
        ("8470", "expected host:port"),
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:", "expected host:port"),
        ("127.0.0.1:http", "expected host:port"),
        ("127.0.0.1:70000", "port must be 0-65535"),
        ("::1:8470", "expected host:port"),
        ("[127.0.0.1]:8470", "an IPv6 address goes in brackets"),
        ("[::1:8470", "expected host:port"),
        ("status.example.org:8470", "the host must be an IP address or localhost"),
        ("http://127.0.0.1:8470", "expected host:port"),
    ],
)
def test_bad_status_listen_names_the_key(listen: str, match: str):
    refused(MINIMAL + f'[status]\nlisten = "{listen}"\n', f"status.listen: {match}")


def test_status_listen_must_be_a_string():
    refused(MINIMAL + "[status]\nlisten = 8470\n", "status.listen: expected a string")
    refused(MINIMAL + "[status]\nport = 8470\n", "unknown key 'status.port'")


# -- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("24h", 86400),
        ("90m", 5400),
        ("2d", 172800),
        ("30s", 30),
        ("1w", 604800),
        ("1.5h", 5400),
        (" 45 m ", 2700),
        ("600", 600),
        (3600, 3600),
        (0.5, 0.5),
    ],
)
def test_durations(value: str | int | float, seconds: float):
    assert parse_duration(value, "schedule.resync_every") == seconds


@pytest.mark.parametrize("value", ["soon", "", "24 hours", "-1h", "h", "1y", "0", 0, -5])
def test_bad_durations_name_the_key(value: str | int):
    with pytest.raises(ConfigError, match=r"schedule\.resync_every: "):
        parse_duration(value, "schedule.resync_every")


def test_duration_in_the_file():
    assert parse(MINIMAL + '[schedule]\nresync_every = "90m"\n').schedule.resync_every == 5400
    assert parse(MINIMAL + "[schedule]\nresync_every = 3600\n").schedule.resync_every == 3600
    refused(MINIMAL + '[schedule]\nresync_every = "soon"\n', r"expected a duration like \"24h\"")


# -- paths -------------------------------------------------------------------------------


def test_relative_paths_are_resolved_against_the_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "hstsync.toml"
    path.write_text(
        '[paths]\nrequests = "requests"\nmirror = "../mirror"\ndatabase = "~/db/h.db"\n'
        '[mast]\ntoken_file = "secret/token"\n'
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir("/")
    cfg = read_config(path)
    assert cfg.paths.requests == tmp_path / "etc" / "requests"
    assert cfg.paths.mirror == tmp_path / "etc" / "../mirror"
    assert cfg.paths.database == tmp_path / "home" / "db" / "h.db"
    assert cfg.mast.token_file == tmp_path / "etc" / "secret" / "token"


def test_read_config_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    for text, match in [
        ("[paths\n", "not valid TOML"),
        ("x = " + "7" * 5000 + "\n", "a number is far too long"),
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (MINIMAL + "[download]\nconcurency = 1\n", "download.concurency"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=match) as info:
            read_config(bad)
        assert str(info.value).startswith(f"{bad}: ")
    bad.write_bytes(b"\xff\xfe[paths]")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path)  # a directory


# -- where the file is looked for ----------------------------------------------------------


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An isolated user config dir and a stand-in for /etc/hstsync/config.toml."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HSTSYNC_CONFIG", raising=False)
    system = tmp_path / "etc" / "hstsync" / "config.toml"
    monkeypatch.setattr(config_load, "SYSTEM_CONFIG", system)
    return {
        "explicit": tmp_path / "explicit.toml",
        "env": tmp_path / "env.toml",
        "user": tmp_path / "xdg" / "hstsync" / "config.toml",
        "system": system,
    }


def write(path: Path, mirror: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MINIMAL.replace('"/m"', f'"/{mirror}"'))


def test_candidate_paths_order(places: dict[str, Path]):
    explicit, env = places["explicit"], places["env"]
    assert candidate_paths(explicit, {"HSTSYNC_CONFIG": str(env)}) == [explicit]
    assert candidate_paths(None, {"HSTSYNC_CONFIG": str(env)}) == [env]
    assert candidate_paths(None, {}) == [places["user"], places["system"]]
    assert candidate_paths(None, {"HSTSYNC_CONFIG": ""}) == [places["user"], places["system"]]


def test_user_config_dir_comes_from_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda app: str(tmp_path / app))
    assert candidate_paths(None, {}) == [tmp_path / "hstsync" / "config.toml", SYSTEM_CONFIG]


def test_system_config_is_etc():
    assert Path("/etc/hstsync/config.toml") == SYSTEM_CONFIG


def test_lookup_takes_the_first_that_is_given_or_found(places: dict[str, Path]):
    for name in places:
        write(places[name], name)
    env = {"HSTSYNC_CONFIG": str(places["env"])}
    assert load_config(places["explicit"], env).paths.mirror == Path("/explicit")
    assert load_config(None, env).paths.mirror == Path("/env")
    assert load_config(None, {}).paths.mirror == Path("/user")
    places["user"].unlink()
    cfg = load_config(None, {})
    assert cfg.paths.mirror == Path("/system") and cfg.source == places["system"]


def test_load_config_reads_the_environment_by_default(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
):
    write(places["env"], "env")
    monkeypatch.setenv("HSTSYNC_CONFIG", str(places["env"]))
    assert load_config().paths.mirror == Path("/env")


def test_a_named_file_that_is_missing_is_an_error_not_a_fallback(places: dict[str, Path]):
    write(places["user"], "user")
    with pytest.raises(ConfigError, match=r"explicit\.toml: no such configuration file"):
        load_config(places["explicit"], {})
    with pytest.raises(ConfigError, match=r"env\.toml: no such configuration file"):
        load_config(None, {"HSTSYNC_CONFIG": str(places["env"])})


def test_no_config_found_lists_where_it_looked(places: dict[str, Path]):
    with pytest.raises(ConfigError, match="no configuration found") as info:
        load_config(None, {})
    message = str(info.value)
    assert str(places["user"]) in message and str(places["system"]) in message
    assert "--config" in message


# -- the programmatic configuration ------------------------------------------------------


def test_for_directory_keeps_everything_under_root(tmp_path: Path):
    cfg = for_directory(tmp_path, server="http://127.0.0.1:9/", concurrency=2, retries=0)
    assert cfg.paths.requests == tmp_path / "requests"
    assert cfg.paths.mirror == tmp_path / "mirror"
    assert cfg.paths.database == tmp_path / "hstsync.db"
    assert cfg.mast.server == "http://127.0.0.1:9"
    assert (cfg.download.concurrency, cfg.download.retries) == (2, 0)


# -- nothing but a Config or a ConfigError ------------------------------------------------

LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
LEAVES |= st.integers(min_value=-(2**2000), max_value=2**2000)
KNOWN_KEYS = ["paths", "mast", "download", "schedule", "requests", "mirror", "database"]
KNOWN_KEYS += ["server", "token_file", "concurrency", "retries", "timeout", "resync_every"]
KNOWN_KEYS += ["status", "listen"]
KEYS = st.sampled_from(KNOWN_KEYS) | st.text(max_size=6)
DOCS = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(doc=st.dictionaries(KEYS, DOCS, max_size=5))
def test_any_document_gives_a_config_or_a_config_error(doc: dict[str, Any]):
    try:
        parse_config(doc, base=Path("/base"))
    except ConfigError as exc:
        assert str(exc)
