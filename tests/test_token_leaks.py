"""The MAST token stays where it belongs: never to another port of a trusted host,
never in the ``on_change`` hook's environment, never on a command line ``ps`` shows.

A real mirror pass against two emulators, real ``hstsync`` processes, the exported curl
script run by ``sh`` with real curl (through a wrapper that records its arguments).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import run_hstsync

from hstsync.archive import parse_manifest
from hstsync.config import for_directory
from hstsync.emulator import EXCLUSIVE_ACCESS, Catalogue, Emulator
from hstsync.model import ProductState, RequestState
from hstsync.service.sync import Mirror
from hstsync.store import Store

SECRET = "SECRET-TOKEN-abc123"
MANIFEST = "proposal_id = 9999\n"


def mixed_catalogue() -> tuple[Catalogue, list[str], list[str]]:
    """Proposal 9999: two public products and two under exclusive access."""
    catalogue = Catalogue()
    public = catalogue.add_program(9999, files=2, size=5760)
    exclusive = catalogue.add_program(9999, files=2, size=5760, data_rights=EXCLUSIVE_ACCESS)
    return catalogue, sorted(p.data_uri for p in public), sorted(p.data_uri for p in exclusive)


def states(database: Path) -> dict[str, ProductState]:
    with Store.open_readonly(database) as store:
        return {row.product.data_uri: row.state for row in store.products("9999")}


def write_config(root: Path, server: str, extra: str = "") -> Path:
    (root / "requests").mkdir(parents=True, exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "hstsync.db"\n'
        f'[mast]\nserver = "{server}"\n'
        "[download]\nbackoff = 0.01\nbackoff_max = 0.02\nretries = 1\n" + extra
    )
    return config


@pytest.mark.parametrize(
    "host",
    ["127.0.0.2", "127.0.0.1"],
    ids=["another-host", "another-port-of-the-same-host"],  # the latter: another user's service
)
async def test_a_redirect_to_another_host_or_port_never_gets_the_token(tmp_path: Path, host: str):
    catalogue, public, exclusive = mixed_catalogue()
    async with (
        Emulator(catalogue, tokens={SECRET: "alice"}) as mast,
        Emulator(catalogue, host=host, tokens={SECRET: "alice"}) as other,
    ):
        assert (other.host, other.port) != (mast.host, mast.port)
        # The other server would serve exclusive data for the token: had it seen the
        # token, exclusive[0] would end done rather than auth_required.
        mast.redirects = {
            public[0].rsplit("/", 1)[1]: other.url,
            exclusive[0].rsplit("/", 1)[1]: other.url,
            exclusive[1].rsplit("/", 1)[1]: mast.url,  # the same origin: the token goes along
        }
        config = for_directory(tmp_path, server=mast.url, backoff=0.01, backoff_max=0.02)
        config.paths.requests.mkdir()
        (config.paths.requests / "9999.toml").write_text(MANIFEST)
        request = parse_manifest(config.paths.requests / "9999.toml")
        with Store(config.paths.database) as store:
            store.upsert_request(request, "9999.toml")
            async with Mirror(config, store, token=SECRET) as mirror:
                assert await mirror.sync(request) is RequestState.INCOMPLETE
        got = states(config.paths.database)
        assert got[public[0]] is ProductState.DONE
        assert got[exclusive[0]] is ProductState.AUTH_REQUIRED
        assert got[exclusive[1]] is ProductState.DONE
        assert other.requests, "the redirects were not followed"
        for r in other.requests:
            assert "Authorization" not in r.headers
            assert "mast_token" not in r.headers.get("Cookie", "")
            assert SECRET not in json.dumps(dict(r.headers))
        first_hops = [r for r in mast.requests if r.path.endswith("/Download/file")]
        assert all(r.headers.get("Authorization") == f"token {SECRET}" for r in first_hops)


async def test_the_on_change_hook_never_sees_the_token_in_its_environment(tmp_path: Path):
    catalogue, _, exclusive = mixed_catalogue()
    seen = tmp_path / "hook-env.txt"
    async with Emulator(catalogue, tokens={SECRET: "alice"}) as mast:
        config = write_config(
            tmp_path, mast.url, f'[hooks]\non_change = "env > {seen}"\ntimeout = 10\n'
        )
        (tmp_path / "requests" / "9999.toml").write_text(MANIFEST)
        env = dict(os.environ, HSTSYNC_NO_KEYRING="1", MAST_API_TOKEN=SECRET)
        code, _, err = await run_hstsync("run", "--once", "--config", str(config), env=env)
        assert code == 0, err
        assert all(s is ProductState.DONE for s in states(tmp_path / "hstsync.db").values())
        assert set(exclusive) <= set(states(tmp_path / "hstsync.db"))
    hook_env = seen.read_text()
    assert "PATH=" in hook_env  # the hook ran, with an environment
    assert SECRET not in hook_env and "MAST_API_TOKEN" not in hook_env


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_export_curl_keeps_the_token_off_curls_command_line(tmp_path: Path):
    catalogue, public, exclusive = mixed_catalogue()
    async with Emulator(catalogue, tokens={SECRET: "alice"}) as mast:
        config = write_config(tmp_path, mast.url)
        (tmp_path / "requests" / "9999.toml").write_text(MANIFEST)
        env = dict(os.environ, HSTSYNC_NO_KEYRING="1", MAST_API_TOKEN=SECRET)
        await run_hstsync("run", "--once", "--config", str(config), env=env)
        code, script, err = await run_hstsync("export-curl", "9999", "--config", str(config))
        assert code == 0, err
        assert SECRET not in script
        # curl as ps would show it: a wrapper first on PATH records its arguments
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        argv_log = tmp_path / "curl-argv.txt"
        wrapper = bin_dir / "curl"
        wrapper.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{argv_log}"\nexec "{shutil.which("curl")}" "$@"\n'
        )
        wrapper.chmod(0o755)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "get.sh").write_text(script)
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "get.sh",
            cwd=elsewhere,
            env=dict(env, PATH=f"{bin_dir}:{os.environ['PATH']}"),
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode()
        for uri in public + exclusive:  # exclusive files came: the header reached curl
            name = uri.rsplit("/", 1)[1]
            [path] = elsewhere.rglob(name)
            assert path.read_bytes() == mast.body(uri)
    argv = argv_log.read_text()
    assert argv.count("\n") == 4
    assert SECRET not in argv


def test_a_trusted_host_with_a_port_is_written_host_colon_port(tmp_path: Path):
    from hstsync.config import parse_config, token_allowed

    config = parse_config(
        {
            "paths": {"requests": "r", "mirror": "m", "database": "d.db"},
            "mast": {"server": "https://mast.stsci.edu", "trusted_hosts": ["mirror.example:8443"]},
        },
        base=tmp_path,
    )
    hosts = config.mast.token_hosts
    assert token_allowed("https://mirror.example:8443/f", hosts)
    assert not token_allowed("https://mirror.example/f", hosts)
