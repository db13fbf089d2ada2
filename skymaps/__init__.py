"""Skymaps, imported as ``mma.skymaps``: a :class:`mma.models.RegionSpec` in, a
:class:`mma.skymaps.region.Region` out.

``decode`` turns FITS bytes into a validated multi-order table, ``region`` turns
that table into a Region with credible levels per tile and level-29 NESTED
``[lo, hi)`` ranges (healpix-alchemy's representation), which answer both
match directions: point in region, and region over stored points.
"""
