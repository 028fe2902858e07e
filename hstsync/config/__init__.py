"""Configuration: typed dataclasses, loaded once from TOML and validated.

- ``values``: the frozen dataclasses (:class:`Config` and its sections) and defaults.
- ``load``: the lookup order, reading the TOML file, validation with dotted key names
  (docs/design.md, "Configuration").
- ``parse``: one value as it is written (durations, sizes, timetables, paths, URLs).
- ``hosts``: where the MAST token may go and where the status endpoint may listen.

Everything public is importable from ``hstsync.config`` itself.
"""

from hstsync.config.hosts import (
    ARCHIVE_HOSTS,
    TOKEN_PAGE,
    default_trusted_hosts,
    host_header_allowed,
    is_loopback,
    parse_listen,
    split_host_pattern,
    token_allowed,
)
from hstsync.config.load import (
    SYSTEM_CONFIG,
    candidate_paths,
    load_config,
    parse_config,
    read_config,
)
from hstsync.config.parse import parse_duration
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
    backoff_wait,
    for_directory,
)

__all__ = [
    "ARCHIVE_HOSTS",
    "DEFAULT_CLOUD_BASE",
    "DEFAULT_SERVER",
    "SYSTEM_CONFIG",
    "TOKEN_PAGE",
    "Config",
    "DownloadConfig",
    "DownloadSource",
    "HooksConfig",
    "MastConfig",
    "PathsConfig",
    "ScheduleConfig",
    "StatusConfig",
    "Timetable",
    "VerifyBudget",
    "backoff_wait",
    "candidate_paths",
    "default_trusted_hosts",
    "for_directory",
    "host_header_allowed",
    "is_loopback",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_listen",
    "read_config",
    "split_host_pattern",
    "token_allowed",
]
