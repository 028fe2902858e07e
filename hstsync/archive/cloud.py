"""The public cloud copy: which products the ``stpubdata`` bucket holds, and where.

STScI mirrors public HST and JWST files in the ``stpubdata`` S3 bucket, readable by
anyone over plain HTTPS (no AWS account, no boto3, no signature). astroquery asks
MAST's ``path_lookup`` service for each product's key. For HST we compute it here
instead, because the layout is fixed and a round trip per product would cost more than
the cloud saves:

    mast:HST/product/u9o40504m_c3m.fits  ->  hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits

that is ``hst/public/<first 4 of the dataset>/<dataset>/<productFilename>``, the
dataset being the 9-character HST name (``ipppssoot``) of the product's ``obs_id``,
or of the file name's root when the ``obs_id`` is not one. A wrong guess costs one
404 and a fallback to MAST, never a wrong file: sizes and FITS checksums are checked
whatever the source.

JWST's keys are the path lookup's (``Resolver.cloud_keys``, asked for the files a pass
is about to fetch, carried as ``Product.cloud_key``): its layout has more than one
form (``jwst/public/jw01345/L3/t/o001/…`` for level-3 files,
``jwst/public/jw01345/jw01345001001/…`` for an exposure's) and not every file is
there, and our evidence of it is thin; a key of our own making that went wrong would
never be noticed. :func:`checked_key` keeps only a key that names the product's own file.

Pure: deciding only. :class:`hstsync.service.sync.fetcher.Fetcher` does the transfers.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from hstsync.config import DownloadConfig, DownloadSource
from hstsync.model import Product

#: dataURIs of products the bucket may hold (astroquery's ``supported_missions`` for HST)
_HST_URI_PREFIX = "mast:hst/product/"
#: dataURIs of products whose keys MAST's path lookup gives (astroquery's
#: ``supported_missions`` for JWST)
_JWST_URI_PREFIX = "mast:jwst/product/"
#: an HST dataset name: instrument, program, observation set, observation, source/transmission
_DATASET = re.compile(r"[a-z0-9]{9}")
#: what a file name in the bucket may be made of
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _dataset(product: Product) -> str | None:
    for candidate in (product.obs_id, product.filename.partition("_")[0]):
        name = candidate.lower()
        if _DATASET.fullmatch(name):
            return name
    return None


def checked_key(path: object, data_uri: str) -> str | None:
    """A key from MAST's path lookup (``"/jwst/public/…/FILE"``) without its leading
    slash, or None unless it is a plain relative path whose last part is the file the
    dataURI names (a key for another file, or one climbing out of the bucket, is
    refused: that product goes to MAST)."""
    if not isinstance(path, str):
        return None
    key = path.lstrip("/")
    parts = key.split("/")
    if len(parts) < 2 or any(not _FILENAME.fullmatch(part) for part in parts):
        return None
    return key if parts[-1] == data_uri.rpartition("/")[2] else None


def cloud_key(product: Product) -> str | None:
    """The product's key in the bucket, or None when the bucket cannot hold it.

    A key the path lookup gave (``Product.cloud_key``, JWST), checked again; else, for
    HST products (``mast:HST/product/…``) whose dataURI names the same file as
    ``productFilename``, the HST layout's: anything else goes to MAST, which knows it.
    """
    uri = product.data_uri
    if product.cloud_key is not None:
        key = checked_key(product.cloud_key, uri)
        return key if key is not None and uri.endswith("/" + product.filename) else None
    if not uri.lower().startswith(_HST_URI_PREFIX):
        return None
    filename = uri[len(_HST_URI_PREFIX) :]
    if filename != product.filename or not _FILENAME.fullmatch(filename):
        return None
    dataset = _dataset(product)
    if dataset is None:
        return None
    return f"hst/public/{dataset[:4]}/{dataset}/{filename}"


def cloud_url(base: str, product: Product) -> str | None:
    """The HTTPS URL of the product's cloud copy under ``base``, or None."""
    key = cloud_key(product)
    if key is None:
        return None
    return f"{base.rstrip('/')}/{quote(key, safe='/')}"


def cloud_source(cfg: DownloadConfig, product: Product) -> str | None:
    """The URL to try before MAST, or None to go to MAST directly.

    Only public products, and only with ``source = "auto"``: exclusive-access data is
    never in the bucket, and a request there would only delay the MAST transfer.
    """
    if cfg.source != DownloadSource.AUTO or not product.is_public:
        return None
    return cloud_url(cfg.cloud_base, product)


def wants_path_lookup(cfg: DownloadConfig, product: Product) -> bool:
    """Whether to ask MAST's path lookup for this product's key before its transfer:
    a public JWST product with ``source = "auto"`` whose key is not known yet."""
    return (
        cfg.source == DownloadSource.AUTO
        and product.is_public
        and product.cloud_key is None
        and product.data_uri.lower().startswith(_JWST_URI_PREFIX)
    )
