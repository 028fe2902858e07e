"""Column metadata: what ``columnsconfig`` answers and the ``fields`` of every reply.

Owns the shape of the wire: the CAOM observation columns (in the order MAST lists
them in the tutorial's table), the product columns, and their types. astroquery's
``build_filter_set`` reads the columns config to decide whether a criterion is
continuous (``[min, max]``) or discrete, and refuses names it does not list.
"""

from __future__ import annotations

from typing import Any, Final

#: (name, wire type, label, separator or None) for each CAOM observation column.
CAOM_COLUMNS: Final[tuple[tuple[str, str, str, str | None], ...]] = (
    ("dataproduct_type", "string", "Product Type", None),
    ("calib_level", "int", "Calibration Level", None),
    ("obs_collection", "string", "Mission", ";"),
    ("obs_id", "string", "Observation ID", None),
    ("target_name", "string", "Target Name", None),
    ("s_ra", "double", "RA", None),
    ("s_dec", "double", "Dec", None),
    ("t_min", "double", "Start Time", None),
    ("t_max", "double", "End Time", None),
    ("t_exptime", "double", "Exposure Length", None),
    ("wavelength_region", "string", "Waveband", ";"),
    ("filters", "string", "Filters", ";"),
    ("em_min", "double", "Min. Wavelength", None),
    ("em_max", "double", "Max. Wavelength", None),
    ("target_classification", "string", "Target Classification", ";"),
    ("obs_title", "string", "Observation Title", None),
    ("t_obs_release", "double", "Release Date", None),
    ("instrument_name", "string", "Instrument", None),
    ("proposal_pi", "string", "Principal Investigator", None),
    ("proposal_id", "string", "Proposal ID", None),
    ("proposal_type", "string", "Proposal Type", None),
    ("project", "string", "Project", ";"),
    ("sequence_number", "int", "Sequence Number", None),
    ("provenance_name", "string", "Provenance Name", None),
    ("s_region", "string", "s_region", None),
    ("jpegURL", "string", "jpegURL", None),
    ("dataURL", "string", "Data URL", None),
    ("dataRights", "string", "Data Rights", None),
    ("mtFlag", "boolean", "Moving Target", None),
    ("srcDen", "float", "Associated Catalogs", None),
    ("intentType", "string", "Observation Type", None),
    ("obsid", "string", "Product Group ID", None),
    ("objID", "string", "Object ID", None),
)

#: Only in ``Mast.Caom.Filtered.Position`` replies: arcseconds from the searched position.
DISTANCE_FIELD: Final = {"name": "distance", "type": "float"}

#: (name, wire type) for each product column of ``Mast.Caom.Products``.
PRODUCT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("obsID", "string"),
    ("obs_collection", "string"),
    ("dataproduct_type", "string"),
    ("obs_id", "string"),
    ("description", "string"),
    ("type", "string"),
    ("dataURI", "string"),
    ("productType", "string"),
    ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"),
    ("productDocumentationURL", "string"),
    ("project", "string"),
    ("prvversion", "string"),
    ("proposal_id", "string"),
    ("productFilename", "string"),
    ("size", "int"),
    ("parent_obsid", "string"),
    ("dataRights", "string"),
    ("calib_level", "int"),
    ("filters", "string"),
)

CAOM_FIELDS: Final = [{"name": name, "type": kind} for name, kind, _, _ in CAOM_COLUMNS]
PRODUCT_FIELDS: Final = [{"name": name, "type": kind} for name, kind in PRODUCT_COLUMNS]

#: Columns matched as ranges (``{"min", "max"}``) rather than as lists of values.
CONTINUOUS: Final = frozenset(
    name for name, kind, _, _ in CAOM_COLUMNS if kind in ("double", "float")
) | {"distance"}

# The VOTable datatypes MAST's config uses; build_filter_set looks at these first.
_VOT = {"string": "char", "int": "int", "double": "double", "float": "float", "boolean": "boolean"}


def _caom_config() -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {
        "_selected_": {"text": "selected", "add": True, "type": "boolean", "hidden": True}
    }
    for order, (name, kind, label, separator) in enumerate(CAOM_COLUMNS):
        entry: dict[str, Any] = {"text": label, "order": order, "vot.datatype": _VOT[kind]}
        if kind == "string":
            entry["vot.arraysize"] = "*"
        if kind == "boolean":
            # as MAST does for mtFlag: a plain type, no VOTable datatype
            del entry["vot.datatype"]
            entry["type"] = "boolean"
        if separator:
            entry["separator"] = separator
        config[name] = entry
    config["distance"] = {"text": 'Distance (")', "vot.datatype": "float", "vot.unit": "arcsec"}
    return config


def _products_config() -> dict[str, dict[str, Any]]:
    return {name: {"text": name, "type": kind} for name, kind in PRODUCT_COLUMNS}


def columns_config(config_id: str) -> dict[str, dict[str, Any]]:
    """The ``columnsconfig`` answer for ``colConfigId``; ``{}`` for unknown ids (as MAST)."""
    if config_id.startswith("Mast.Caom.Products"):
        return _products_config()
    if config_id.startswith("Mast.Caom"):
        return _caom_config()
    return {}
