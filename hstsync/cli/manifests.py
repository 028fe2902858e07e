"""The commands that write a request out for someone else: ``add`` (a manifest for the
daemon, written atomically into the request directory) and ``export-curl`` (a curl
script for a machine where hstsync does not run).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hstsync.cli.exits import EXIT_OK, EXIT_USAGE
from hstsync.config import Config
from hstsync.errors import ManifestError, UsageError


def cmd_add(config: Config, args: argparse.Namespace) -> int:
    from hstsync.archive import write_manifest
    from hstsync.model import Request

    criteria: dict[str, Any] = {}
    if args.instrument:
        criteria["instrument_name"] = args.instrument
    if args.obs_id:
        criteria["obs_id"] = args.obs_id
    filters: dict[str, Any] = {}
    if args.calib_level:
        filters["calib_level"] = args.calib_level
    if args.product_type:
        filters["productType"] = args.product_type
    if args.extension:
        filters["extension"] = args.extension
    if args.mrp_only:
        filters["mrp_only"] = True
    name = args.name or args.proposal_id[0]
    # render_manifest checks its text with the manifest parser itself, so `add`
    # never writes a manifest the daemon would refuse.
    try:
        request = Request(name, tuple(args.proposal_id), criteria, filters, args.collection)
        path = write_manifest(config.paths.requests, request, replace=args.replace)
    except ManifestError as exc:
        hint = "; use --replace to overwrite it" if "exists already" in str(exc) else ""
        raise UsageError(f"{exc}{hint}") from None
    print(f"wrote {path}")
    return EXIT_OK


def cmd_export_curl(config: Config, request: str) -> int:
    from hstsync.cli.curl import curl_script
    from hstsync.model import relpath_or_none
    from hstsync.service.sync import download_url
    from hstsync.store import Store

    with Store.open_readonly(config.paths.database) as store:
        if store.get_request(request) is None:
            print(f"hstsync: no request named {request!r}", file=sys.stderr)
            return EXIT_USAGE
        rows = store.products(request)
    safe = [
        (row.product, download_url(config.mast.server, row.product.data_uri))
        for row in rows
        if relpath_or_none(row.product) is not None
    ]
    sys.stdout.write(curl_script(request, safe))
    return EXIT_OK
