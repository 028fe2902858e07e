"""The public cloud copy of HST data: which products the ``stpubdata`` bucket holds, and where.

STScI mirrors public HST files in the ``stpubdata`` S3 bucket, readable by anyone
over plain HTTPS (no AWS account, no boto3, no signature). astroquery asks MAST's
``path_lookup`` service for each product's key; we compute it here instead, because
for HST the layout is fixed and a round trip per product would cost more than the
cloud saves:

    mast:HST/product/u9o40504m_c3m.fits  ->  hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits

that is ``hst/public/<first 4 of the dataset>/<dataset>/<productFilename>``, the
dataset being the 9-character HST name (``ipppssoot``) of the product's ``obs_id``,
or of the file name's root when the ``obs_id`` is not one. A wrong guess costs one
404 and a fallback to MAST, never a wrong file: sizes and FITS checksums are checked
whatever the source.

Pure: deciding only. :class:`hstsync.service.sync.mirror.Mirror` does the transfers.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from hstsync.config import DownloadConfig, DownloadSource
from hstsync.model import Product

#: dataURIs of products the bucket may hold (astroquery's ``supported_missions`` for HST)
_HST_URI_PREFIX = "mast:hst/product/"
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


def cloud_key(product: Product) -> str | None:
    """The product's key in the bucket, or None when the bucket cannot hold it.

    Only HST products (``mast:HST/product/…``) whose dataURI names the same file as
    ``productFilename`` are mapped: anything else goes to MAST, which knows it.
    """
    uri = product.data_uri
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
