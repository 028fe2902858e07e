"""Loading the configuration: where it is looked for, reading the TOML, validating it.

Lookup order (docs/design.md, "Configuration"): ``--config``, ``$HSTSYNC_CONFIG``, the
user config dir (platformdirs), ``/etc/hstsync/config.toml``. Unknown keys and wrong types are
refused with the key's dotted name, so a typo never silently becomes a default.
The values and their defaults are :mod:`hstsync.config.values`.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hstsync.config.values import (
    DEFAULT_CLOUD_BASE,
    DEFAULT_SERVER,
    Config,
    DownloadConfig,
    DownloadSource,
    HooksConfig,
    MastConfig,
    PathsConfig,
    ScheduleConfig,
    StatusConfig,
    Timetable,
    VerifyBudget,
)
from hstsync.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/hstsync/config.toml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str | int | float, key: str, *, off: bool = False) -> float:
    """``"24h"``, ``"90m"``, ``"2d"``, ``"30s"`` or a number of seconds; with ``off``,
    ``"0"`` (or 0) too, for a feature turned off."""
    if off and value in (0, "0", "off"):
        return 0.0
    if isinstance(value, bool):
        raise ConfigError(f'{key}: expected a duration like "24h", got {value!r}')
    if isinstance(value, int | float):
        seconds = _float(value)
    elif not isinstance(value, str):
        raise ConfigError(f'{key}: expected a duration like "24h" or "90m", got {value!r}')
    else:
        match = _DURATION.match(value)
        if not match:
            raise ConfigError(f'{key}: expected a duration like "24h" or "90m", got {value!r}')
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}: must be longer than zero and finite, got {value!r}")
    return seconds


#: HOST or HOST:PORT (IPv6 in brackets): a port other than the scheme's must be named
_HOST_PATTERN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^/:@\s\[\]]+)(:[0-9]{1,5})?")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(|B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB|K|M|G|T)\s*$")
_SIZE_UNITS = {
    "": 1, "B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
    "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40,
}  # fmt: skip


def parse_size(value: str | int, key: str, *, zero: bool = False) -> int:
    """``"20GB"`` (powers of 1000), ``"4GiB"`` or ``"4G"`` (of 1024), or a number of bytes;
    with ``zero``, 0 (or "0") too, for no limit."""
    if zero and value in (0, "0"):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f'{key}: expected a size like "20GB", got {value!r}')
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        if not match:
            raise ConfigError(f'{key}: expected a size like "20GB" or "512MiB", got {value!r}')
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if size <= 0:
        raise ConfigError(f"{key}: must be more than zero, got {value!r}")
    return size


_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_bwlimit(value: Any, key: str) -> Timetable:
    """rclone's form: ``"2M"`` (all day), ``"off"`` or ``""``, or a timetable of
    ``HH:MM,RATE`` changes separated by spaces (``"08:00,2M 19:00,off"``)."""
    if not isinstance(value, str):
        raise ConfigError(
            f'{key}: expected a rate like "2M" or "08:00,2M 19:00,off", got {value!r}'
        )
    words = value.split()
    if not words or words == ["off"]:
        return Timetable()
    if len(words) == 1 and "," not in words[0]:
        return Timetable(((0, float(parse_size(words[0], key))),))
    changes: list[tuple[int, float | None]] = []
    for word in words:
        clock, _, rate = word.partition(",")
        match = _CLOCK.match(clock)
        if match is None or not rate:
            raise ConfigError(f'{key}: expected "HH:MM,RATE" changes like "08:00,2M", got {word!r}')
        minute = int(match.group(1)) * 60 + int(match.group(2))
        changes.append((minute, None if rate == "off" else float(parse_size(rate, key))))
    if len({minute for minute, _ in changes}) != len(changes):
        raise ConfigError(f"{key}: a time is given twice in {value!r}")
    return Timetable(tuple(sorted(changes)))


def _proxy(value: Any) -> str:
    if value == "":
        return ""
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+/?$", value):
        raise ConfigError(f'download.proxy: expected a URL like "http://proxy:3128", got {value!r}')
    return value.rstrip("/")


def parse_budget(value: Any, key: str) -> VerifyBudget:
    """``"20GB, 30m"``: the most bytes and the longest time, either alone."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f'{key}: expected a budget like "20GB, 30m", got {value!r}')
    default = VerifyBudget()
    size, seconds = default.bytes, default.seconds
    for part in value.split(","):
        part = part.strip()
        if _DURATION.match(part) and part[-1:] in "smhdw" and not part[-1:].isdigit():
            seconds = parse_duration(part, key)
        else:
            size = parse_size(part, key)
    return VerifyBudget(size, seconds)


def _hosts(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None  # MastConfig fills in the server's host and ARCHIVE_HOSTS
    if not isinstance(value, list) or not all(
        isinstance(v, str) and _HOST_PATTERN.fullmatch(v.strip()) for v in value
    ):
        raise ConfigError(
            f'mast.trusted_hosts: expected a list of host patterns like ["*.stsci.edu"] '
            f'or ["127.0.0.1:8080"], got {value!r}'
        )
    return tuple(v.strip().lower() for v in value)


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


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(value: str, key: str, env: Mapping[str, str] | None = None) -> Path:
    """A path as a shell would take it: ``~`` and ``~user`` at its start, and
    ``$NAME`` or ``${NAME}`` anywhere (``$HOME/hst``). A variable that is not set is an
    error naming the key: an empty one would make a path nobody meant."""
    env = os.environ if env is None else env

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in env:
            raise ConfigError(f"{key}: ${name} in {value!r} is not set in the environment")
        return env[name]

    try:
        return Path(_VARIABLE.sub(variable, value)).expanduser()
    except RuntimeError:  # "~someone" with no such user, or no home directory
        raise ConfigError(f"{key}: cannot expand {value!r} (no such home directory)") from None


def _int(table: Mapping[str, Any], key: str, where: str, default: int, minimum: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{where}.{key}: must be at least {minimum}, got {value}")
    return value


def _number(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key}: expected a number of seconds, got {value!r}")
    seconds = _float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{where}.{key}: must be greater than zero and finite, got {value}")
    return seconds


def _float(value: int | float) -> float:
    # TOML hex integers have no size limit; one too large for a float means "never"
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _server(value: Any, key: str = "mast.server", example: str = DEFAULT_SERVER) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a URL string, got {value!r}")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise ConfigError(
            f"{key}: expected an http(s) URL like {example!r}, got {value!r}"
        ) from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{key}: expected an http(s) URL like {example!r}, got {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: a base URL takes no query or fragment")
    return value.rstrip("/")


def _source(value: Any) -> DownloadSource:
    choices = " or ".join(f'"{s.value}"' for s in DownloadSource)
    if isinstance(value, str):
        try:
            return DownloadSource(value.strip().lower())
        except ValueError:
            pass
    raise ConfigError(f"download.source: expected {choices}, got {value!r}")


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
    server = _server(mast.get("server", DEFAULT_SERVER))
    mast_cfg = MastConfig(
        server=server,
        token_file=token_file,
        timeout=_number(mast, "timeout", "mast", MastConfig().timeout),
        trusted_hosts=_hosts(mast.get("trusted_hosts")),
    )

    dl = _table(doc, "download")
    defaults = DownloadConfig()
    _check_keys(dl, {f.name for f in fields(DownloadConfig)}, "download")
    download_cfg = DownloadConfig(
        concurrency=_int(dl, "concurrency", "download", defaults.concurrency, 1),
        retries=_int(dl, "retries", "download", defaults.retries, 0),
        timeout=_number(dl, "timeout", "download", defaults.timeout),
        backoff=_number(dl, "backoff", "download", defaults.backoff),
        backoff_max=_number(dl, "backoff_max", "download", defaults.backoff_max),
        connections=_int(dl, "connections", "download", defaults.connections, 1),
        per_host=_int(dl, "per_host", "download", defaults.per_host, 1),
        segment_min=_int(dl, "segment_min", "download", defaults.segment_min, 0),
        source=_source(dl.get("source", defaults.source)),
        cloud_base=_server(
            dl.get("cloud_base", defaults.cloud_base), "download.cloud_base", DEFAULT_CLOUD_BASE
        ),
        min_speed=_int(dl, "min_speed", "download", defaults.min_speed, 0),
        min_speed_time=_number(dl, "min_speed_time", "download", defaults.min_speed_time),
        proxy=_proxy(dl.get("proxy", "")),
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
        timeout=_number(hooks, "timeout", "hooks", HooksConfig().timeout),
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
