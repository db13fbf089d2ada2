"""Skymaps, imported as ``mma.skymaps``: a :class:`mma.models.RegionSpec` in, a
:class:`mma.skymaps.region.Region` out.

``decode`` turns FITS bytes into a validated, normalised multi-order table
(:func:`~mma.skymaps.decode.read_multiorder`), ``shapes`` turns circles (and
Fisher core + tail mixtures) into the same kind of table
(:func:`~mma.skymaps.shapes.circle_map`), and ``region`` turns a table into a
Region (:func:`~mma.skymaps.region.build_region`): level-29 NESTED ``[lo, hi)``
ranges (healpix-alchemy's representation) with credible levels and searched
areas per tile exactly as ``ligo.skymap.postprocess.crossmatch`` defines them.
These answer both match directions: point in region, and region over stored points.

Untrusted maps are read in bounded memory: ``fits_table`` parses the FITS headers
before the data is inflated, ``flat`` merges flat maps block by block, ``meta``
decodes the header metadata, and ``limits`` holds the caps every region obeys
(tiles per region, the smallest and largest error a shape may have).
"""
