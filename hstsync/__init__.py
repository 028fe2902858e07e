"""hstsync: keep Hubble (HST) and JWST programs mirrored from the MAST archive, unattended."""

__version__ = "0.1.0"
