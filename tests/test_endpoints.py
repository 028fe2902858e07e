"""Every query and every download of a run goes to ``[mast] server`` and nowhere else.

astroquery fixes its endpoint URLs from ``conf.server`` at import time. To prove
hstsync overrides them, the run happens in a real process whose astroquery is
configured (astropy's ``astroquery.cfg``) to use a *decoy* emulator: the decoy must
see no request at all, and the configured emulator must see every one.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from helpers import run_hstsync

from hstsync.cli.demo import TUTORIAL_MANIFEST
from hstsync.emulator import Emulator


async def test_every_request_of_a_run_reaches_the_configured_server(
    tmp_path: Path, emulator: Emulator
):
    async with Emulator() as decoy:
        xdg = tmp_path / "xdg"
        (xdg / "astropy").mkdir(parents=True)
        (xdg / "astropy" / "astroquery.cfg").write_text(f"[mast]\nserver = {decoy.url}\n")
        (tmp_path / "requests").mkdir()
        (tmp_path / "requests" / "7291.toml").write_text(TUTORIAL_MANIFEST)
        config = tmp_path / "config.toml"
        config.write_text(
            '[paths]\nrequests = "requests"\nmirror = "mirror"\ndatabase = "state/hstsync.db"\n'
            f'[mast]\nserver = "{emulator.url}"\n'
        )
        env = dict(os.environ, XDG_CONFIG_HOME=str(xdg), HSTSYNC_NO_KEYRING="1")

        code, _, err = await run_hstsync(
            "run", "--once", "--config", str(config), env=env, cwd=tmp_path
        )

        assert code == 0, err
        assert decoy.requests == []

    expected_host = urlsplit(emulator.url).netloc
    paths = {r.path for r in emulator.requests}
    assert "/api/v0/invoke" in paths
    assert "/portal/Mashup/Mashup.asmx/columnsconfig" in paths
    assert "/api/v0.1/Download/file" in paths
    assert {r.headers.get("Host") for r in emulator.requests} == {expected_host}
    fetched = {r.query for r in emulator.requests if r.path == "/api/v0.1/Download/file"}
    assert len(fetched) == 6  # the six files (the large ones in several segments)
