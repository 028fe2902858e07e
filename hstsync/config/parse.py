"""One value of the configuration, as it is written: durations ("30d"), sizes ("20GB"),
bandwidth timetables ("08:00,2M 19:00,off"), verify budgets, paths with ``~`` and
``$VAR``, URLs, host patterns and numbers. Each reader names the key it reads in its
error, so a mistake is told with where it is (:mod:`hstsync.config.load` reads the
file and its tables).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hstsync.config.values import DEFAULT_SERVER, DownloadSource, Timetable, VerifyBudget
from hstsync.errors import ConfigError

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
        seconds = as_float(value)
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


def proxy_url(value: Any) -> str:
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


def host_patterns(value: Any) -> tuple[str, ...] | None:
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


def bounded_int(table: Mapping[str, Any], key: str, where: str, default: int, minimum: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{where}.{key}: must be at least {minimum}, got {value}")
    return value


def positive_seconds(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key}: expected a number of seconds, got {value!r}")
    seconds = as_float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{where}.{key}: must be greater than zero and finite, got {value}")
    return seconds


def as_float(value: int | float) -> float:
    # TOML hex integers have no size limit; one too large for a float means "never"
    try:
        return float(value)
    except OverflowError:
        return math.inf


def server_url(value: Any, key: str = "mast.server", example: str = DEFAULT_SERVER) -> str:
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


def download_source(value: Any) -> DownloadSource:
    choices = " or ".join(f'"{s.value}"' for s in DownloadSource)
    if isinstance(value, str):
        try:
            return DownloadSource(value.strip().lower())
        except ValueError:
            pass
    raise ConfigError(f"download.source: expected {choices}, got {value!r}")
