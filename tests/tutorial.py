"""What the tutorial's selection of proposal 7291 must yield: shared by the tests.

The seed's table: two observations, calibrated (level 2) science products, six files
at these catalogue sizes, 50.18 MB in all.
"""

TUTORIAL_FILES = {
    "o58701010/o58701010_x1d.fits": 77760,
    "o58701010/o58701010_x2d.fits": 14474880,
    "o58701010/o58701010_flt.fits": 10535040,
    "o58701030/o58701030_x1d.fits": 77760,
    "o58701030/o58701030_x2d.fits": 14474880,
    "o58701030/o58701030_flt.fits": 10535040,
}
#: the six file names, in the order above
TUTORIAL_NAMES = [rel.split("/")[1] for rel in TUTORIAL_FILES]
TUTORIAL_BYTES = 50_175_360
