"""Ingest: each message parsed, stored and matched in one transaction, or dead-lettered.

:mod:`~mma.ingest.pipeline` runs each message through the
:mod:`~mma.ingest.guard` (a bad message is dead-lettered, a database failure is
retried); :mod:`~mma.ingest.notices` and
:mod:`~mma.ingest.alerts` are the two paths, writing through the
:class:`~mma.ingest.stage.Stage` they share.
"""

from mma.ingest.guard import Parsed, parse_checked
from mma.ingest.pipeline import Pipeline
from mma.ingest.stage import Handler, Outcome, utcnow

__all__ = ("Handler", "Outcome", "Parsed", "Pipeline", "parse_checked", "utcnow")
