"""A request's observations, a page at a time (``query_criteria``).

Asking for one page, and reading off it the obsids, the paging the archive says it used
and the observations planned but not yet executed (JWST's calibration level -1: no
files yet), are this module's; so is saying why a first page is empty, in words a
person can act on. When the pages end is :class:`~hstsync.archive.paging.Listing`'s to
say (pure). Blocking, like every call through the :class:`~hstsync.archive.client.Client`.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from hstsync.archive import paging
from hstsync.archive.cells import missing
from hstsync.archive.client import Client
from hstsync.archive.collection import query_ids
from hstsync.archive.paging import ObservationPage, page_count
from hstsync.archive.selection import why_no_observation
from hstsync.errors import ManifestError
from hstsync.model import Request

log = logging.getLogger(__name__)


def observation_page(client: Client, request: Request, page: int = 1) -> ObservationPage:
    """One page of the request's observations (``query_criteria``,
    :data:`~hstsync.archive.paging.OBS_PAGE` a page), with the paging the archive
    says it used. Blocking.

    A page at a time because astroquery holds every page's JSON and table at once:
    25,000 observations cost 110 MB for the moment it parses them. Whether to ask
    for the next page is :class:`~hstsync.archive.paging.Listing`'s to say.
    """
    client.paging, client.listing = None, True
    try:
        with client.translated(), warnings.catch_warnings():
            # NoResultsWarning and friends: we report emptiness ourselves.
            warnings.simplefilter("ignore")
            observations = client.obs.query_criteria(
                proposal_id=query_ids(request.collection, request.proposal_ids),
                obs_collection=request.collection,
                pagesize=paging.OBS_PAGE,
                page=page,
                **dict(request.criteria),
            )
            if len(observations) == 0 and page == 1:
                raise ManifestError(_why_no_observation(client, request))
            obsids = [str(o) for o in observations["obsid"] if not missing(o) and str(o)]
            planned = _planned(observations)
    finally:
        client.listing = False
    said: dict[str, Any] = client.paging or {}
    log.debug("request %s: %d observations on page %d", request.name, len(obsids), page)
    return ObservationPage(
        obsids,
        rows=len(observations),
        page_size=page_count(said.get("pageSize")) or paging.OBS_PAGE,
        pages=page_count(said.get("pagesFiltered")),
        planned=planned,
    )


def _why_no_observation(client: Client, request: Request) -> str:
    """Why a request's first page of observations is empty: its proposal has none,
    or its criteria match none of them (one more query, without the criteria, says
    which values there are)."""
    ids = ", ".join(request.proposal_ids)
    nothing = f"proposal {ids} has no {request.collection} observations"
    if not request.criteria:
        return nothing
    client.listing = False
    observations = client.obs.query_criteria(
        proposal_id=query_ids(request.collection, request.proposal_ids),
        obs_collection=request.collection,
        pagesize=paging.OBS_PAGE,
        page=1,
    )
    if len(observations) == 0:
        return nothing
    whole = len(observations) < paging.OBS_PAGE
    return why_no_observation(
        request.proposal_ids,
        request.criteria,
        observations,
        whole=whole,
        collection=request.collection,
    )


#: the calibration level of an observation planned, not yet executed (the JWST
#: pipeline's "Processing Levels": -1)
PLANNED_LEVEL = -1


def _planned(observations: Any) -> frozenset[str]:
    """The obsids of the observations planned, not yet executed (calib_level -1)."""
    if "calib_level" not in observations.colnames:
        return frozenset()
    pairs = zip(observations["obsid"], observations["calib_level"], strict=True)
    return frozenset(str(obsid) for obsid, level in pairs if _is_planned(obsid, level))


def _is_planned(obsid: Any, level: Any) -> bool:
    if missing(obsid) or missing(level):
        return False
    try:
        return int(level) == PLANNED_LEVEL
    except (TypeError, ValueError, OverflowError):
        return False
