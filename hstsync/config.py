"""Configuration: typed dataclasses, loaded once from TOML and validated.

Lookup order (SPEC): ``--config``, ``$HSTSYNC_CONFIG``, the user config dir
(platformdirs), ``/etc/hstsync/config.toml``. Unknown keys and wrong types are
refused with the key's dotted name, so a typo never silently becomes a default.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from tenacity import wait_exponential_jitter
from tenacity.wait import wait_base

from hstsync.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/hstsync/config.toml")
DEFAULT_SERVER = "https://mast.stsci.edu"
#: the public ``stpubdata`` bucket (public HST files), virtual-hosted S3 over HTTPS
DEFAULT_CLOUD_BASE = "https://stpubdata.s3.amazonaws.com"


@dataclass(frozen=True, slots=True)
class PathsConfig:
    requests: Path
    mirror: Path
    database: Path


#: hosts the token may go to besides the configured server's (see trusted_hosts)
ARCHIVE_HOSTS = ("*.stsci.edu",)


@dataclass(frozen=True, slots=True)
class MastConfig:
    server: str = DEFAULT_SERVER
    token_file: Path | None = None
    #: seconds one archive call (a query, a batch of product lists) may take
    timeout: float = 120.0
    #: host patterns (``*.stsci.edu``) the token may be sent to, also on a redirect;
    #: None = the server's host and :data:`ARCHIVE_HOSTS`
    trusted_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.trusted_hosts is None:
            object.__setattr__(self, "trusted_hosts", default_trusted_hosts(self.server))

    @property
    def token_hosts(self) -> tuple[str, ...]:
        """The host patterns the token may go to (``trusted_hosts``, defaults filled in)."""
        return self.trusted_hosts or ()


def default_trusted_hosts(server: str) -> tuple[str, ...]:
    host = (urlsplit(server).hostname or "").lower()
    return tuple(dict.fromkeys((host, *ARCHIVE_HOSTS)) if host else ARCHIVE_HOSTS)


class DownloadSource(StrEnum):
    """Where files come from: MAST only, or the cloud copy first for public files."""

    MAST = "mast"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class DownloadConfig:
    concurrency: int = 8
    retries: int = 5
    timeout: float = 600.0
    #: first retry delay in seconds; doubles each attempt, with jitter
    backoff: float = 1.0
    #: longest wait between two attempts (a server's Retry-After may ask for more)
    backoff_max: float = 120.0
    #: HTTP connections open at once, over all files and hosts (files and their segments)
    connections: int = 16
    #: HTTP connections open at once to any one host
    per_host: int = 8
    #: files larger than this (bytes) are fetched as several Range segments at once;
    #: 0 = never split a file
    segment_min: int = 8 << 20
    #: "auto": public HST files from the cloud copy first, MAST when that fails
    source: DownloadSource = DownloadSource.MAST
    #: base URL of the cloud copy's bucket (no credentials are ever sent there)
    cloud_base: str = DEFAULT_CLOUD_BASE
    #: a transfer slower than ``min_speed`` bytes/s over ``min_speed_time`` seconds is
    #: aborted and retried, resuming (curl's --speed-limit/--speed-time); 0 = off
    min_speed: int = 1024
    min_speed_time: float = 60.0


def backoff_wait(cfg: DownloadConfig) -> wait_base:
    """The waits between attempts: exponential from ``backoff`` to ``backoff_max``, with
    jitter. One construction for every retry policy (transfers, archive lookups)."""
    return wait_exponential_jitter(multiplier=cfg.backoff, max=cfg.backoff_max, jitter=cfg.backoff)


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    #: seconds between re-resolutions of a finished request
    resync_every: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StatusConfig:
    #: "host:port" of the read-only status endpoint (IPv6 as "[::1]:8470"); "" = off
    listen: str = ""

    @property
    def address(self) -> tuple[str, int] | None:
        """The validated ``(host, port)`` to bind, or None when the endpoint is off."""
        return parse_listen(self.listen, "status.listen") if self.listen else None


@dataclass(frozen=True, slots=True)
class HooksConfig:
    #: shell command run after a pass that brought new or changed files or left
    #: failures, with a JSON document on stdin; "" = none
    on_change: str = ""
    #: seconds a hook may run before it is killed
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class Config:
    paths: PathsConfig
    mast: MastConfig = field(default_factory=MastConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    #: the file this configuration came from, if any
    source: Path | None = None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str | int | float, key: str) -> float:
    """``"24h"``, ``"90m"``, ``"2d"``, ``"30s"`` or a number of seconds."""
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


_LISTEN = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")


def parse_listen(value: str, key: str) -> tuple[str, int]:
    """``"127.0.0.1:8470"``, ``"[::1]:8470"`` or ``"localhost:8470"`` → (host, port).

    The host is an IP address or ``localhost``: a name that resolves to several
    addresses would bind wherever the resolver says. Port 0 takes a free port (the
    daemon logs which).
    """
    example = 'like "127.0.0.1:8470" or "[::1]:8470"'
    match = _LISTEN.match(value)
    if not match:
        raise ConfigError(f"{key}: expected host:port {example}, got {value!r}")
    host = match.group("v6") or match.group("host")
    port = int(match.group("port"))
    if port > 65535:
        raise ConfigError(f"{key}: port must be 0-65535, got {port}")
    if host == "localhost":
        return host, port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{key}: the host must be an IP address or localhost, {example}, got {value!r}"
        ) from None
    if (address.version == 6) != bool(match.group("v6")):
        raise ConfigError(f"{key}: an IPv6 address goes in brackets, {example}, got {value!r}")
    return str(address), port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine. The one definition: the status endpoint's warning and where a token may
    go over plain http both use it."""
    name = host.strip().lower().rstrip(".")
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def token_allowed(url: str, trusted: Iterable[str]) -> bool:
    """Whether the MAST token may be sent with a request to ``url``: its host matches
    one of the ``trusted`` patterns (``[mast] trusted_hosts``), over https, or over
    plain http to this machine only. The one rule, for queries and downloads alike."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    if not host:
        return False
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(host)):
        return False
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in trusted)


def _hosts(value: Any, server: str) -> tuple[str, ...]:
    if value is None:
        return default_trusted_hosts(server)
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v.strip() and not any(c in v for c in "/:@ ") for v in value
    ):
        raise ConfigError(
            f'mast.trusted_hosts: expected a list of host patterns like ["*.stsci.edu"], '
            f"got {value!r}"
        )
    return tuple(v.strip().lower() for v in value)


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            known = ", ".join(sorted(allowed))
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
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~someone" with no such user, or no home directory
        raise ConfigError(
            f"{where}.{key}: cannot expand {value!r} (no such home directory)"
        ) from None
    return path if path.is_absolute() else (base / path)


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
        trusted_hosts=_hosts(mast.get("trusted_hosts"), server),
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
    )

    sched = _table(doc, "schedule")
    _check_keys(sched, {"resync_every"}, "schedule")
    schedule_cfg = ScheduleConfig()
    if "resync_every" in sched:
        schedule_cfg = ScheduleConfig(
            resync_every=parse_duration(sched["resync_every"], "schedule.resync_every")
        )

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
        return [Path(env["HSTSYNC_CONFIG"])]
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


def for_directory(root: Path, *, server: str, **download: Any) -> Config:
    """A configuration keeping everything under ``root`` (demo, tests, benchmarks)."""
    return Config(
        paths=PathsConfig(
            requests=root / "requests", mirror=root / "mirror", database=root / "hstsync.db"
        ),
        mast=MastConfig(server=server.rstrip("/")),
        download=replace(DownloadConfig(), **download),
    )
