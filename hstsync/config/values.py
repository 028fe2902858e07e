"""Configuration values: the typed, frozen dataclasses and their defaults.

One :class:`Config` per process, holding a table's worth of settings per section
(``paths``, ``mast``, ``download``, ``schedule``, ``status``, ``hooks``); every default
a user can leave out lives here, next to the field it fills. Building one from a TOML
file, with each wrong key named, is :mod:`hstsync.config.load`'s job;
:func:`for_directory` builds one for a directory (demo, tests, benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hstsync.config.hosts import default_trusted_hosts, parse_listen

if TYPE_CHECKING:
    from tenacity.wait import wait_base

DEFAULT_SERVER = "https://mast.stsci.edu"
#: the public ``stpubdata`` bucket (public HST and JWST files), virtual-hosted S3 over HTTPS
DEFAULT_CLOUD_BASE = "https://stpubdata.s3.amazonaws.com"


@dataclass(frozen=True, slots=True)
class PathsConfig:
    requests: Path
    mirror: Path
    database: Path


@dataclass(frozen=True, slots=True)
class MastConfig:
    server: str = DEFAULT_SERVER
    token_file: Path | None = None
    #: seconds one archive call (a query, a batch of product lists) may take
    timeout: float = 120.0
    #: host patterns (``*.stsci.edu``) the token may be sent to, also on a redirect;
    #: None = the server's host and :data:`~hstsync.config.hosts.ARCHIVE_HOSTS`
    trusted_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.trusted_hosts is None:
            object.__setattr__(self, "trusted_hosts", default_trusted_hosts(self.server))

    @property
    def token_hosts(self) -> tuple[str, ...]:
        """The host patterns the token may go to (``trusted_hosts``, defaults filled in)."""
        return self.trusted_hosts or ()


class DownloadSource(StrEnum):
    """Where files come from: MAST only, or the cloud copy first for public files."""

    MAST = "mast"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Timetable:
    """A bandwidth limit by time of day, as rclone's ``--bwlimit`` writes it: from each
    ``(minute of the day, bytes/s)`` on, that rate (None: no limit) until the next."""

    changes: tuple[tuple[int, float | None], ...] = ()

    def rate_at(self, minute: int) -> float | None:
        """The limit at ``minute`` (0–1439) of the local day; None: none."""
        if not self.changes:
            return None
        # before the day's first change, the last one of the day before holds
        current = self.changes[-1][1]
        for start, rate in self.changes:
            if start <= minute:
                current = rate
        return current


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
    #: "auto": public HST and JWST files from the cloud copy first, MAST when that fails
    source: DownloadSource = DownloadSource.MAST
    #: base URL of the cloud copy's bucket (no credentials are ever sent there)
    cloud_base: str = DEFAULT_CLOUD_BASE
    #: a transfer slower than ``min_speed`` bytes/s over ``min_speed_time`` seconds is
    #: aborted and retried, resuming (curl's --speed-limit/--speed-time); 0 = off
    min_speed: int = 1024
    min_speed_time: float = 60.0
    #: the proxy every download goes through ("http://host:port"); "" = the environment's
    #: HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as astroquery's lookups take them
    proxy: str = ""
    #: the most bytes/s all downloads take together, by time of day (Timetable)
    bwlimit: Timetable = field(default_factory=Timetable)
    #: the most bytes one pass fetches (0: no limit); the rest waits for the next pass
    max_bytes_per_pass: int = 0


def backoff_wait(cfg: DownloadConfig) -> wait_base:
    """The waits between attempts: exponential from ``backoff`` to ``backoff_max``, with
    jitter. One construction for every retry policy (transfers, archive lookups)."""
    from tenacity import wait_exponential_jitter  # here: `hstsync status` never retries

    return wait_exponential_jitter(multiplier=cfg.backoff, max=cfg.backoff_max, jitter=cfg.backoff)


@dataclass(frozen=True, slots=True)
class VerifyBudget:
    """What one pass's rolling verify may spend: bytes read of the mirror, seconds."""

    bytes: int = 20 * 10**9
    seconds: float = 1800.0


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    #: seconds between re-resolutions of a finished request
    resync_every: float = 24 * 3600.0
    #: every file is verified (its bytes hashed, the archive asked whether it changed)
    #: at least once in this many seconds; 0 = the daemon never verifies on its own
    verify_every: float = 30 * 86400.0
    #: the most one pass's verification reads of the mirror, and how long it may take;
    #: the rest waits for the next pass
    verify_budget: VerifyBudget = field(default_factory=lambda: VerifyBudget())
    #: replaced versions older than this (seconds) are removed from the attic; 0 = never
    attic_keep: float = 90 * 86400.0


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


def for_directory(root: Path, *, server: str, **download: Any) -> Config:
    """A configuration keeping everything under ``root`` (demo, tests, benchmarks)."""
    return Config(
        paths=PathsConfig(
            requests=root / "requests", mirror=root / "mirror", database=root / "hstsync.db"
        ),
        mast=MastConfig(server=server.rstrip("/")),
        download=replace(DownloadConfig(), **download),
    )
