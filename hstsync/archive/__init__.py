"""What MAST says: manifests, resolution through astroquery, the token, archive and cloud URLs.

- ``manifest``: a request file -> :class:`~hstsync.model.Request`, and back.
- ``resolve``: a Request -> products, through astroquery (blocking; run in a thread).
- ``rows``: one catalogue row -> a Product: sizes, masked cells, repeats, twins (pure).
- ``auth``: where the MAST token comes from and which hosts may receive it.
- ``cloud``: a product's key and URL in the ``stpubdata`` bucket (pure).

Imports only the shared bottom (``config``, ``model``, ``errors``).
"""
