"""Matching: optical objects against event regions, their scores and their candidates.

:mod:`~mma.match.correlator` finds matches in both directions,
:mod:`~mma.match.scoring` scores them, :mod:`~mma.match.background` measures the
survey backgrounds, and :mod:`~mma.match.candidate` turns an object matched to
an event into the published candidate, deciding when a change is worth a new
revision.
"""
