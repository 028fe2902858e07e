"""The MAST token as a security-minded archive user expects it handled (docs/design.md,
"The MAST token").

Sources in their order, ``login``/``logout``/``whoami``, the token kept to the
configured host (redirects, plain HTTP), refused products that wait as
``auth_required`` and come in once a token is there, and a token that never lands
in anything hstsync writes. Keyrings here are files (``file_keyring.py``), never
the desktop's.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keyring
import pytest
from file_keyring import FileKeyring

from hstsync.archive import standing
from hstsync.archive.auth import Token, find_token
from hstsync.archive.keyring_entry import KEYRING_SERVICE, KEYRING_USER, keyring_service
from hstsync.archive.manifest import parse_manifest_bytes
from hstsync.archive.resolve import Resolver
from hstsync.cli.commands import main
from hstsync.config import for_directory
from hstsync.emulator import EXCLUSIVE_ACCESS, Catalogue, Emulator, run_in_thread
from hstsync.errors import ConfigError
from hstsync.model import ProductState, RequestState
from hstsync.service.sync.mirror import Mirror
from hstsync.store.db import Store

SECRET = "SECRET-TOKEN-abc123"
TESTS = Path(__file__).resolve().parent
MANIFEST = "proposal_id = 9999\n"


def mixed_catalogue() -> tuple[Catalogue, set[str], set[str]]:
    """Proposal 9999: two public products and two under exclusive access."""
    catalogue = Catalogue()
    public = catalogue.add_program(9999, files=2, size=5760)
    exclusive = catalogue.add_program(9999, files=2, size=5760, data_rights=EXCLUSIVE_ACCESS)
    return catalogue, {p.data_uri for p in public}, {p.data_uri for p in exclusive}


def write_config(root: Path, server: str, token_file: Path | None = None) -> Path:
    (root / "requests").mkdir(parents=True, exist_ok=True)
    config = root / "config.toml"
    text = (
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
    )
    if token_file is not None:
        text += f'token_file = "{token_file}"\n'
    config.write_text(text + "[download]\nbackoff = 0.01\nbackoff_max = 0.02\nretries = 1\n")
    return config


def downloads(emu: Emulator, since: int = 0) -> list[str]:
    """dataURIs of the GET downloads the emulator received since request ``since``."""
    from urllib.parse import parse_qs

    return [
        parse_qs(r.query)["uri"][0]
        for r in emu.requests[since:]
        if r.method == "GET" and r.path.endswith("/Download/file")
    ]


def states(root: Path) -> dict[str, ProductState]:
    with Store.open_readonly(root / "hstsync.db") as store:
        return {row.product.data_uri: row.state for row in store.products("9999")}


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[FileKeyring]:
    """An empty keyring, in this process, outside the directory hstsync works in."""
    backend = FileKeyring(tmp_path / "keyring.json")
    before = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(before)


@pytest.fixture
def anonymous(monkeypatch: pytest.MonkeyPatch, file_keyring: FileKeyring) -> FileKeyring:
    monkeypatch.delenv("MAST_API_TOKEN", raising=False)
    monkeypatch.delenv("HSTSYNC_NO_KEYRING", raising=False)
    monkeypatch.delenv("HSTSYNC_CONFIG", raising=False)
    return file_keyring


def subprocess_env(root: Path, **extra: str) -> dict[str, str]:
    """A child's environment: our file keyring, a private HOME, no token unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAST_API_TOKEN", "HSTSYNC_CONFIG")}
    home = root / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")])),
        PYTHON_KEYRING_BACKEND="file_keyring.FileKeyring",
        HSTSYNC_TEST_KEYRING=str(root.parent / f"{root.name}-keyring.json"),
    )
    env.pop("HSTSYNC_NO_KEYRING", None)
    env.update(extra)
    return env


def hstsync(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hstsync", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def files_holding(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    ]


# -- where the token comes from --------------------------------------------------------------


def test_token_sources_in_specs_order(tmp_path: Path, anonymous: FileKeyring):
    token_file = tmp_path / "credential"
    token_file.write_text("from-file\n")
    env = {"MAST_API_TOKEN": " from-env "}
    anonymous.set_password(KEYRING_SERVICE, KEYRING_USER, "from-keyring")

    first = find_token(token_file, env)
    assert first is not None and (first.value, first.source) == ("from-file", "token_file")
    second = find_token(None, env)
    assert second is not None and (second.value, second.source) == ("from-env", "environment")
    third = find_token(None, {})
    assert third is not None and (third.value, third.source) == ("from-keyring", "keyring")
    anonymous.delete_password(KEYRING_SERVICE, KEYRING_USER)
    assert find_token(None, {}) is None


def test_keyring_can_be_switched_off(anonymous: FileKeyring, monkeypatch: pytest.MonkeyPatch):
    anonymous.set_password(KEYRING_SERVICE, KEYRING_USER, "from-keyring")
    monkeypatch.setenv("HSTSYNC_NO_KEYRING", "1")
    assert find_token(None, {}) is None


def test_astroquerys_stored_login_is_found(anonymous: FileKeyring):
    """A user who ran ``Observations.login(store_token=True)`` needs nothing more."""
    with run_in_thread(tokens={SECRET: "alice"}) as emu:
        resolver = Resolver(emu.url)
        resolver.client.obs.login(token=SECRET, store_token=True)  # astroquery's own code path
    found = find_token(None, {})
    assert found is not None and (found.value, found.source) == (SECRET, "keyring")


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", "is empty"), ("\n \n", "is empty"), (f"{SECRET}\nmore\n", "line breaks")],
)
def test_a_token_file_that_cannot_hold_a_token_is_a_config_error(
    tmp_path: Path, content: str, reason: str
):
    path = tmp_path / "credential"
    path.write_text(content)
    with pytest.raises(ConfigError, match=reason) as caught:
        find_token(path, {})
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        find_token(tmp_path / "missing", {})


def test_token_repr_hides_the_secret():
    token = Token(SECRET, "environment")
    assert SECRET not in repr(token) and SECRET not in str(token)
    assert SECRET not in token.describe()


# -- where the token may go ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("https://mast.stsci.edu", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://mast.stsci.edu", False),
        ("http://10.0.0.5:8080", False),
    ],
)
def test_token_is_sent_in_clear_text_only_to_this_machine(
    tmp_path: Path, server: str, allowed: bool
):
    config = for_directory(tmp_path, server=server)
    with Store(tmp_path / "db") as store:
        if allowed:
            Mirror(config, store, token=SECRET)
            Mirror(config, store, token=None)
        else:
            with pytest.raises(ConfigError, match="only over https") as caught:
                Mirror(config, store, token=SECRET)
            assert SECRET not in str(caught.value)
            Mirror(config, store, token=None)  # public data needs no token and no https


def test_run_with_token_and_plain_http_server_is_refused_at_start(
    tmp_path: Path, anonymous: FileKeyring, monkeypatch: pytest.MonkeyPatch, capsys
):
    config = write_config(tmp_path, "http://mast.example.org")
    (tmp_path / "requests" / "9999.toml").write_text(MANIFEST)
    monkeypatch.setenv("MAST_API_TOKEN", SECRET)
    assert main(["run", "--once", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "only over https" in err and SECRET not in err
    assert main(["whoami", "--config", str(config)]) == 2


def test_query_cookie_is_scoped_to_the_configured_host():
    catalogue, _, _ = mixed_catalogue()
    with (
        run_in_thread(catalogue, tokens={SECRET: "alice"}) as mast,
        run_in_thread(catalogue, tokens={SECRET: "alice"}) as other,
    ):
        for server in (mast.url, mast.url.replace("127.0.0.1", "localhost")):
            resolver = Resolver(server, SECRET)
            assert resolver.session_info()["ezid"] == "alice"  # sent where it belongs
            # another port of the same machine, and another host name for it
            resolver.client.obs._session.get(other.url + "/whoami", timeout=10)
            resolver.client.obs._session.get(
                other.url.replace("127.0.0.1", "localhost") + "/whoami", timeout=10
            )
        assert len(other.requests) == 4
        assert all("mast_token" not in r.headers.get("Cookie", "") for r in other.requests)
        assert all(SECRET not in json.dumps(r.headers) for r in other.requests)
    # an https server's cookie never travels over http, even to the same host
    [cookie] = list(Resolver("https://mast.example.org", SECRET).client.obs._session.cookies)
    assert (cookie.domain, cookie.secure) == ("mast.example.org", True)


# -- refused products wait, and come in once a token is there ------------------------------------


@pytest.mark.parametrize("source", ["token_file", "environment", "keyring"])
def test_exclusive_products_wait_then_come_with_a_token_from_each_source(
    tmp_path: Path,
    anonymous: FileKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
):
    catalogue, public, exclusive = mixed_catalogue()
    with run_in_thread(catalogue, tokens={SECRET: "alice"}) as emu:
        config = write_config(tmp_path, emu.url)
        (tmp_path / "requests" / "9999.toml").write_text(MANIFEST)

        assert main(["run", "--once", "--config", str(config)]) == 1
        got = states(tmp_path)
        assert {u for u, s in got.items() if s is ProductState.DONE} == public
        assert {u for u, s in got.items() if s is ProductState.AUTH_REQUIRED} == exclusive
        with Store.open_readonly(tmp_path / "hstsync.db") as store:
            [summary] = store.summaries()
            rows = {r.product.data_uri: r for r in store.products("9999")}
        assert summary.request.state is RequestState.INCOMPLETE
        for uri in exclusive:
            error = rows[uri].last_error or ""
            assert "proposal 9999" in error and "hstsync login" in error, error
            assert "MAST_API_TOKEN" in error
        capsys.readouterr()
        assert main(["status", "--json", "--config", str(config)]) == 1
        [shown] = json.loads(capsys.readouterr().out)["requests"]
        assert (shown["products"]["auth_required"], shown["products"]["done"]) == (2, 2)

        if source == "token_file":
            credential = tmp_path / "credential"
            credential.write_text(SECRET + "\n")
            config = write_config(tmp_path, emu.url, token_file=credential)
        elif source == "environment":
            monkeypatch.setenv("MAST_API_TOKEN", SECRET)
        else:
            anonymous.set_password(keyring_service(emu.url), KEYRING_USER, SECRET)
        since = len(emu.requests)
        assert main(["run", "--once", "--config", str(config)]) == 0
        assert sorted(downloads(emu, since)) == sorted(exclusive)
        assert set(states(tmp_path).values()) == {ProductState.DONE}
        for uri in exclusive:
            obs_file = uri.rsplit("/", 1)[1]
            path = tmp_path / "mirror/mastDownload/HST" / obs_file.split("_")[0] / obs_file
            assert path.read_bytes() == emu.body(uri)


async def test_a_running_mirror_picks_up_a_new_token(tmp_path: Path):
    catalogue, public, exclusive = mixed_catalogue()
    current: list[Token | None] = [None]
    async with Emulator(catalogue, tokens={SECRET: "alice"}) as emu:
        config = for_directory(tmp_path, server=emu.url, backoff=0.01, backoff_max=0.02)
        request = parse_manifest_bytes("9999", MANIFEST.encode(), ".toml")
        with Store(config.paths.database) as store:
            store.upsert_request(request, "9999.toml")
            async with Mirror(config, store, token_source=lambda: current[0]) as mirror:
                assert await mirror.sync(request) is RequestState.INCOMPLETE
                current[0] = Token("wrong-token", "keyring")
                since = len(emu.requests)
                assert await mirror.sync(request) is RequestState.INCOMPLETE
                assert sorted(downloads(emu, since)) == sorted(exclusive)  # tried, refused
                current[0] = Token(SECRET, "keyring")
                since = len(emu.requests)
                assert await mirror.sync(request) is RequestState.DONE
                assert sorted(downloads(emu, since)) == sorted(exclusive)
    assert public <= set(states(tmp_path))


# -- the token never lands anywhere --------------------------------------------------------------


@pytest.mark.parametrize("valid", [True, False], ids=["valid-token", "invalid-token"])
def test_a_whole_run_never_writes_the_token_anywhere(tmp_path: Path, valid: bool):
    catalogue, _, exclusive = mixed_catalogue()
    root = tmp_path / "run"
    root.mkdir()
    tokens = {SECRET: "alice"} if valid else {"some-other-token": "bob"}
    with run_in_thread(catalogue, tokens=tokens) as emu:
        config = write_config(root, emu.url)
        (root / "requests" / "9999.toml").write_text(MANIFEST)
        (root / "requests" / "broken.toml").write_text("proposal_id = [")  # an error.txt
        env = subprocess_env(root, MAST_API_TOKEN=SECRET)
        outputs = [hstsync(env, "-v", "run", "--once", "--config", str(config))]
        outputs += [
            hstsync(env, "status", "--config", str(config)),
            hstsync(env, "status", "--json", "--config", str(config)),
            hstsync(env, "status", "9999", "--config", str(config)),
            hstsync(env, "whoami", "--config", str(config)),
        ]
        assert any(r.path.endswith("/Download/file") for r in emu.requests)
        sent = [r for r in emu.requests if r.path.endswith("/Download/file")]
        assert all(r.headers.get("Authorization") == f"token {SECRET}" for r in sent)

    run = outputs[0]
    assert run.returncode == 1, run.stderr  # the broken manifest, at least
    for number, proc in enumerate(outputs):
        (root / f"out-{number}.txt").write_text(proc.stdout + proc.stderr)
        assert SECRET not in proc.stdout and SECRET not in proc.stderr
        assert SECRET[:8] not in proc.stdout  # not even the part whoami's answer echoes
    assert (root / "requests" / "failed" / "broken.error.txt").exists()
    assert files_holding(root, SECRET) == []
    assert stat.S_IMODE((root / "hstsync.db").stat().st_mode) == 0o600
    for side in root.glob("hstsync.db-*"):
        assert stat.S_IMODE(side.stat().st_mode) == 0o600, side

    got = states(root)
    if valid:
        assert set(got.values()) == {ProductState.DONE}
        assert outputs[4].returncode == 0 and "ezid: alice" in outputs[4].stdout
    else:
        assert {u for u, s in got.items() if s is ProductState.AUTH_REQUIRED} == exclusive
        assert "does not accept the MAST token" in run.stderr  # said early, once
        assert outputs[4].returncode == 1


# -- login, logout, whoami ---------------------------------------------------------------------


def test_login_checks_stores_under_the_servers_entry_and_writes_no_file_of_ours(tmp_path: Path):
    root = tmp_path / "site"
    root.mkdir()
    with run_in_thread(tokens={SECRET: "alice"}) as emu:
        config = write_config(root, emu.url)
        env = subprocess_env(root)
        keyring_file = Path(env["HSTSYNC_TEST_KEYRING"])
        entry = keyring_service(emu.url)

        refused = hstsync(env, "login", "--config", str(config), stdin="not-a-token\n")
        assert refused.returncode == 1
        assert "does not accept this token" in refused.stderr
        assert not keyring_file.exists()  # nothing stored
        # the token astroquery and MAST use, which a login elsewhere must leave alone
        FileKeyring(keyring_file).set_password(KEYRING_SERVICE, KEYRING_USER, "real-mast")

        since = len(emu.requests)
        done = hstsync(env, "login", "--config", str(config), stdin=SECRET + "\n")
        assert done.returncode == 0, done.stderr
        assert "accepted for alice" in done.stdout
        # checked against the configured server's session info, with the token
        [check] = [r for r in emu.requests[since:] if r.path == "/whoami"]
        assert f"mast_token={SECRET}" in check.headers.get("Cookie", "")
        stored = FileKeyring(keyring_file).get_password(entry, KEYRING_USER)
        assert stored == SECRET and f"stored in the keyring ({entry})" in done.stdout

        who = hstsync(env, "whoami", "--config", str(config))
        assert who.returncode == 0, who.stderr
        assert "token from: the keyring" in who.stdout
        assert "ezid: alice" in who.stdout and "anon: False" in who.stdout
        assert "mast:exclusive_access" in who.stdout

        out = hstsync(env, "logout", "--config", str(config))
        assert out.returncode == 0 and "removed" in out.stdout
        assert FileKeyring(keyring_file).get_password(entry, KEYRING_USER) is None
        again = hstsync(env, "logout", "--config", str(config))
        assert again.returncode == 0 and "no MAST token was stored" in again.stdout
        gone = hstsync(env, "whoami", "--config", str(config))
        assert gone.returncode == 1 and "no MAST token" in gone.stderr
        real = FileKeyring(keyring_file).get_password(KEYRING_SERVICE, KEYRING_USER)
        assert real == "real-mast"  # never replaced, never removed

    for proc in (refused, done, who, out, again, gone):
        assert SECRET not in proc.stdout + proc.stderr
    assert files_holding(root, SECRET) == []  # config dir, HOME, astropy's dirs


def test_login_without_a_keyring_says_what_to_do(tmp_path: Path):
    with run_in_thread(tokens={SECRET: "alice"}) as emu:
        config = write_config(tmp_path, emu.url)
        env = subprocess_env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        proc = hstsync(env, "login", "--config", str(config), stdin=SECRET)
        assert proc.returncode == 2
        assert "no keyring backend" in proc.stderr and "MAST_API_TOKEN" in proc.stderr
        assert not any(r.path == "/whoami" for r in emu.requests)  # refused before use
        env = subprocess_env(tmp_path, HSTSYNC_NO_KEYRING="1")
        proc = hstsync(env, "login", "--config", str(config), stdin=SECRET)
        assert proc.returncode == 2 and "HSTSYNC_NO_KEYRING" in proc.stderr


def test_whoami_names_the_source_and_warns_before_expiry(
    tmp_path: Path, anonymous: FileKeyring, monkeypatch: pytest.MonkeyPatch, capsys
):
    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    with run_in_thread(tokens={SECRET: "alice"}) as emu:
        emu.token_expiry[SECRET] = soon
        credential = tmp_path / "credential"
        credential.write_text(SECRET)
        config = write_config(tmp_path, emu.url, token_file=credential)
        assert main(["whoami", "--config", str(config)]) == 0
        out, err = capsys.readouterr()
        assert "token from: [mast] token_file" in out
        assert f"expires: {soon}" in out and "expires at" in err
        assert SECRET[:8] not in out + err

        monkeypatch.setenv("MAST_API_TOKEN", "stale-token")
        config = write_config(tmp_path, emu.url)
        assert main(["whoami", "--config", str(config)]) == 1
        out, err = capsys.readouterr()
        assert "token from: $MAST_API_TOKEN" in out and "anon: True" in out
        assert "does not accept the token from $MAST_API_TOKEN" in err


def test_session_lines_leave_out_the_token_wherever_it_appears():
    info = {
        "anon": False,
        "ezid": "alice",
        "token": SECRET,
        "attrib": {"display_name": "alice", "note": f"issued {SECRET}", "token": "x"},
        "scopes": ["mast:exclusive_access"],
    }
    lines = standing.session_lines(info, SECRET)
    assert lines == [
        "anon: False",
        "ezid: alice",
        "attrib.display_name: alice",
        "scopes: ['mast:exclusive_access']",
    ]


def test_session_warning_only_when_refused_or_expiring():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    ok = {"anon": False, "ezid": "alice", "expires": "2025-03-01T00:00:00Z"}
    assert standing.session_warning(ok, now) is None
    assert standing.session_warning({"anon": False, "ezid": "alice"}, now) is None
    soon = {**ok, "expires": "2025-01-03T00:00:00+00:00"}
    assert "expires at 2025-01-03" in (standing.session_warning(soon, now) or "")
    past = {**ok, "expires": "2024-12-31T00:00:00"}
    assert "expired at 2024-12-31" in (standing.session_warning(past, now) or "")
    assert "does not accept" in (standing.session_warning({"anon": True}, now) or "")


def test_login_at_a_terminal_reads_the_token_without_echo(tmp_path: Path):
    import pty
    import select

    with run_in_thread(tokens={SECRET: "alice"}) as emu:
        config = write_config(tmp_path, emu.url)
        entry = keyring_service(emu.url)
        env = subprocess_env(tmp_path)
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "hstsync", "login", "--config", str(config)],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=env,
            start_new_session=True,  # no controlling terminal: getpass uses the pty
        )
        os.close(follower)
        seen = b""
        try:
            while b"token: " not in seen:
                ready, _, _ = select.select([leader], [], [], 60)
                assert ready, f"no prompt: {seen!r}"
                seen += os.read(leader, 4096)
            os.write(leader, SECRET.encode() + b"\n")
            assert proc.wait(timeout=60) == 0
            while select.select([leader], [], [], 0.5)[0]:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO once the child has closed its side
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(leader)
            if proc.poll() is None:
                proc.kill()
    text = seen.decode(errors="replace")
    assert "accepted for alice" in text
    assert SECRET not in text  # not echoed as it was typed
    stored = FileKeyring(Path(env["HSTSYNC_TEST_KEYRING"])).get_password(entry, KEYRING_USER)
    assert stored == SECRET


def test_the_keyring_entry_is_astroquerys_for_mast_and_the_servers_own_elsewhere():
    assert keyring_service("https://mast.stsci.edu") == "astroquery:mast.stsci.edu.token"
    assert keyring_service("https://MAST.stsci.edu:443") == KEYRING_SERVICE
    assert keyring_service("http://127.0.0.1:8765") == "hstsync:127.0.0.1:8765.token"
    assert keyring_service("https://masttest.stsci.edu") == "hstsync:masttest.stsci.edu.token"


def test_a_token_file_every_user_can_read_is_used_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "token"
    path.write_text("a-token\n")
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING):
        assert find_token(path, {}) == Token("a-token", "token_file")

    assert f"mast.token_file {path} is readable by every user" in caplog.text
    assert f"chmod 600 {path}" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        find_token(path, {})
    assert caplog.text == ""


# -- advice that can work where it is given (issue: "run hstsync login" where it cannot help)


def test_advice_for_a_token_from_the_environment_does_not_stop_at_login():
    advice = standing.renewal_advice("environment", keyring_usable=True)
    assert "MAST_API_TOKEN" in advice and "would not help" in advice


def test_advice_for_a_token_file_names_the_file():
    advice = standing.renewal_advice("token_file", token_file=Path("/run/credentials/x/token"))
    assert "/run/credentials/x/token" in advice and "login" not in advice


def test_advice_without_a_keyring_never_says_login_alone():
    assert standing.renewal_advice(None, keyring_usable=False).startswith("set MAST_API_TOKEN")
    assert standing.renewal_advice(None, keyring_usable=True) == (
        "run `hstsync login` or set MAST_API_TOKEN"
    )
    assert standing.renewal_advice("keyring", keyring_usable=True) == "run `hstsync login`"


def test_refused_token_message_names_what_to_do_for_its_source():
    message = standing.auth_required_message(
        ["9999"], have_token=True, refusal="HTTP 401", source="environment"
    )
    assert "MAST_API_TOKEN" in message and "(HTTP 401)" in message
    warning = standing.session_warning({"anon": True}, source="environment") or ""
    assert "does not accept" in warning and "would not help" in warning
