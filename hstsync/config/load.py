"""Loading the configuration: where it is looked for, reading the TOML, validating it.

Lookup order (docs/design.md, "Configuration"): ``--config``, ``$HSTSYNC_CONFIG``, the
user config dir (platformdirs), ``/etc/hstsync/config.toml``. Unknown keys and wrong types are
refused with the key's dotted name, so a typo never silently becomes a default.
The values and their defaults are :mod:`hstsync.config.values`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from hstsync.config.parse import (
    bounded_int,
    download_source,
    expand,
    host_patterns,
    parse_budget,
    parse_bwlimit,
    parse_duration,
    parse_size,
    positive_seconds,
    proxy_url,
    server_url,
)
from hstsync.config.values import (
    DEFAULT_CLOUD_BASE,
    DEFAULT_SERVER,
    Config,
    DownloadConfig,
    HooksConfig,
    MastConfig,
    PathsConfig,
    ScheduleConfig,
    StatusConfig,
)
from hstsync.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/hstsync/config.toml")


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            known = ", ".join(sorted(allowed))
            import difflib  # only to explain a mistake

            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {name!r} (known here: {known}){hint}")


def _table(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a table [{name}]")
    return value


def _path(table: Mapping[str, Any], key: str, where: str, base: Path) -> Path:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: expected a path (a non-empty string), got {value!r}")
    path = expand(value, f"{where}.{key}")
    return path if path.is_absolute() else (base / path)


def parse_config(doc: Mapping[str, Any], *, base: Path, source: Path | None = None) -> Config:
    """Validate a parsed TOML document into a :class:`Config`.

    Relative paths are taken relative to ``base`` (the config file's directory).
    """
    _check_keys(doc, {"paths", "mast", "download", "schedule", "status", "hooks"}, "")

    paths = _table(doc, "paths")
    _check_keys(paths, {"requests", "mirror", "database"}, "paths")
    for key in ("requests", "mirror", "database"):
        if key not in paths:
            raise ConfigError(f"paths.{key}: missing (every [paths] key must be set)")
    paths_cfg = PathsConfig(
        requests=_path(paths, "requests", "paths", base),
        mirror=_path(paths, "mirror", "paths", base),
        database=_path(paths, "database", "paths", base),
    )

    mast = _table(doc, "mast")
    _check_keys(mast, {"server", "token_file", "timeout", "trusted_hosts"}, "mast")
    token_file: Path | None = None
    if mast.get("token_file", ""):
        token_file = _path(mast, "token_file", "mast", base)
    elif not isinstance(mast.get("token_file", ""), str):
        raise ConfigError(f"mast.token_file: expected a path string, got {mast['token_file']!r}")
    server = server_url(mast.get("server", DEFAULT_SERVER))
    mast_cfg = MastConfig(
        server=server,
        token_file=token_file,
        timeout=positive_seconds(mast, "timeout", "mast", MastConfig().timeout),
        trusted_hosts=host_patterns(mast.get("trusted_hosts")),
    )

    dl = _table(doc, "download")
    defaults = DownloadConfig()
    _check_keys(dl, {f.name for f in fields(DownloadConfig)}, "download")
    download_cfg = DownloadConfig(
        concurrency=bounded_int(dl, "concurrency", "download", defaults.concurrency, 1),
        retries=bounded_int(dl, "retries", "download", defaults.retries, 0),
        timeout=positive_seconds(dl, "timeout", "download", defaults.timeout),
        backoff=positive_seconds(dl, "backoff", "download", defaults.backoff),
        backoff_max=positive_seconds(dl, "backoff_max", "download", defaults.backoff_max),
        connections=bounded_int(dl, "connections", "download", defaults.connections, 1),
        per_host=bounded_int(dl, "per_host", "download", defaults.per_host, 1),
        segment_min=bounded_int(dl, "segment_min", "download", defaults.segment_min, 0),
        source=download_source(dl.get("source", defaults.source)),
        cloud_base=server_url(
            dl.get("cloud_base", defaults.cloud_base), "download.cloud_base", DEFAULT_CLOUD_BASE
        ),
        min_speed=bounded_int(dl, "min_speed", "download", defaults.min_speed, 0),
        min_speed_time=positive_seconds(dl, "min_speed_time", "download", defaults.min_speed_time),
        proxy=proxy_url(dl.get("proxy", "")),
        bwlimit=parse_bwlimit(dl.get("bwlimit", ""), "download.bwlimit"),
        max_bytes_per_pass=(
            parse_size(dl["max_bytes_per_pass"], "download.max_bytes_per_pass", zero=True)
            if "max_bytes_per_pass" in dl
            else 0
        ),
    )

    sched = _table(doc, "schedule")
    _check_keys(sched, {"resync_every", "verify_every", "verify_budget", "attic_keep"}, "schedule")
    schedule_cfg = ScheduleConfig()
    if "resync_every" in sched:
        schedule_cfg = replace(
            schedule_cfg,
            resync_every=parse_duration(sched["resync_every"], "schedule.resync_every"),
        )
    if "verify_every" in sched:
        every = parse_duration(sched["verify_every"], "schedule.verify_every", off=True)
        schedule_cfg = replace(schedule_cfg, verify_every=every)
    if "attic_keep" in sched:
        keep = parse_duration(sched["attic_keep"], "schedule.attic_keep", off=True)
        schedule_cfg = replace(schedule_cfg, attic_keep=keep)
    if "verify_budget" in sched:
        budget = parse_budget(sched["verify_budget"], "schedule.verify_budget")
        schedule_cfg = replace(schedule_cfg, verify_budget=budget)

    status = _table(doc, "status")
    _check_keys(status, {"listen"}, "status")
    listen = status.get("listen", "")
    if not isinstance(listen, str):
        raise ConfigError(f'status.listen: expected a string like "127.0.0.1:8470", got {listen!r}')
    status_cfg = StatusConfig(listen=listen.strip())
    _ = status_cfg.address  # validate now, so a bad address is refused at load time

    hooks = _table(doc, "hooks")
    _check_keys(hooks, {"on_change", "timeout"}, "hooks")
    on_change = hooks.get("on_change", "")
    if not isinstance(on_change, str):
        raise ConfigError(f"hooks.on_change: expected a command string, got {on_change!r}")
    hooks_cfg = HooksConfig(
        on_change=on_change.strip(),
        timeout=positive_seconds(hooks, "timeout", "hooks", HooksConfig().timeout),
    )

    return Config(
        paths=paths_cfg,
        mast=mast_cfg,
        download=download_cfg,
        schedule=schedule_cfg,
        status=status_cfg,
        hooks=hooks_cfg,
        source=source,
    )


def candidate_paths(explicit: Path | None, env: Mapping[str, str]) -> list[Path]:
    """Where a configuration is looked for, first found wins."""
    if explicit is not None:
        return [explicit]
    if env.get("HSTSYNC_CONFIG"):
        return [expand(env["HSTSYNC_CONFIG"], "$HSTSYNC_CONFIG", env)]
    import platformdirs  # here: a --config or $HSTSYNC_CONFIG never needs it

    return [Path(platformdirs.user_config_dir("hstsync")) / "config.toml", SYSTEM_CONFIG]


def load_config(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Find, read and validate the configuration. Raises :class:`ConfigError`."""
    env = os.environ if env is None else env
    candidates = candidate_paths(explicit, env)
    for path in candidates:
        if explicit is None and not env.get("HSTSYNC_CONFIG") and not _present(path):
            continue
        return read_config(path)
    looked = ", ".join(str(p) for p in candidates)
    raise ConfigError(
        f"no configuration found (looked in {looked}); "
        "pass --config FILE or copy config.example.toml there"
    )


def _present(path: Path) -> bool:
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # there but unreadable: read_config says why
    return True


def read_config(path: Path) -> Config:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except ValueError:  # tomllib's int() refuses numbers of thousands of digits
        raise ConfigError(f"{path}: not valid TOML (a number is far too long)") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None
    try:
        return parse_config(doc, base=path.parent.resolve(), source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
