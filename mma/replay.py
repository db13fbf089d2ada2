"""``mma replay`` and ``mma ingest``: files through the same pipeline as live messages.

A replay processes the records of its files in stream-time order (a notice at
its issue time, an alert at its detection time) so that windows and
back-matching behave as they would live; ``mma ingest`` keeps file order. How
files become records, with bounded memory, is :mod:`mma.files`.

The final re-score runs at the stream's clock (:class:`StreamClock`): the time
of the latest record *stored* (not of one refused), and not of a few records
far beyond the rest of the stream, which are flagged in the log instead of
trusted.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from tqdm import tqdm

from mma.files import Record, Spool, iter_files, park, read_records, unpark
from mma.ingest import Outcome, Parsed, Pipeline
from mma.models import Alert
from mma.registry import Registry

log = logging.getLogger(__name__)

BATCH = 500  # alerts per transaction (consecutive in stream order, between notices)

#: Records later than the rest of the stream by more than this do not set its clock.
MAX_CLOCK_GAP = timedelta(days=30)

STORED = frozenset({"notice", "alert", "duplicate"})

PROGRESS_DELAY_S = 1.0  # reading files faster than this shows no bar


class StreamClock:
    """The clock of a replayed stream: the latest time among the records stored.

    A small group of records separated from everything before it by more than
    *max_gap* (e.g. one alert dated years after the rest) is an outlier: it is
    processed at its own time like any record, but it does not set the clock
    of the final re-score, and it is named in a warning.

    Parameters
    ----------
    max_gap : timedelta
        The largest gap in stream time that still joins two groups of records.
    """

    def __init__(self, max_gap: timedelta = MAX_CLOCK_GAP) -> None:
        self.max_gap = max_gap
        self._seen: list[tuple[datetime, str]] = []

    def stored(self, when: datetime, origin: str) -> None:
        """A record of stream time *when* was stored (or already was)."""
        self._seen.append((when, origin))

    def now(self) -> datetime | None:
        """The trusted clock, or None if nothing was stored; outliers are logged."""
        seen = sorted(self._seen)
        end = len(seen)
        while end > 1:
            cut = next((i for i in range(end - 1, 0, -1)
                        if seen[i][0] - seen[i - 1][0] > self.max_gap), None)
            if cut is None or end - cut >= cut:  # the tail is not the smaller group
                break
            end = cut
        if end < len(seen):
            outliers = seen[end:]
            log.warning("%d record(s) later than the rest of the stream by more than %.4g d do "
                        "not set its clock (%s): first %s at %s", len(outliers),
                        self.max_gap.total_seconds() / 86400,
                        seen[end - 1][0].isoformat(), outliers[0][1], outliers[0][0].isoformat())
        return seen[end - 1][0] if seen else None


def replay(pipeline: Pipeline, registry: Registry, paths: Iterable[str | os.PathLike[str]],
           *, max_bytes: int, progress_min_items: int = 200, ordered: bool = True,
           rescore: bool = True, max_gap: timedelta = MAX_CLOCK_GAP,
           progress: bool = True) -> int:
    """Process every record under *paths*; return how many were processed.

    With ``ordered=False`` (``mma ingest``) records go in file order instead of
    stream-time order. With ``rescore=False`` (the daemon's spool, whose scheduler
    re-scores) the final re-scoring is left out.

    With *progress*, and stderr a terminal, a progress bar shows each phase: reading
    the files (bytes; shown after :data:`PROGRESS_DELAY_S`), processing the records
    (when at least *progress_min_items*) and the final re-score. Log records are
    written above the bar (:mod:`mma.log`).
    """
    clock = StreamClock(max_gap)
    files = list_files(paths)
    with Spool(_spool_dir(pipeline)) as spool:
        if ordered:
            keys = park(pipeline, registry, _reading(files, "read", progress), spool,
                        max_bytes=max_bytes)
            records = unpark(pipeline, keys, spool, max_bytes=max_bytes)
            shown = progress and len(keys) >= progress_min_items
            with tqdm(records, total=len(keys), desc="process", unit="msg", file=sys.stderr,
                      disable=None if shown else True, dynamic_ncols=True) as bar:
                n = feed(pipeline, bar, clock)
        else:
            shown = progress
            n = feed(pipeline, (rec for _path, _alone, rec in read_records(
                pipeline, registry, _reading(files, "ingest", progress),
                max_bytes=max_bytes)), clock)
    now = clock.now()
    if now is not None and rescore:
        # As the daemon's scheduler does: final scores use the background measured
        # from everything the stream delivered.
        with tqdm(total=None, desc="re-score", bar_format="{desc}: {elapsed}",
                  file=sys.stderr, disable=None if shown else True, leave=False):
            pipeline.rescore(now)
    return n


def list_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files under *paths* (:func:`~mma.files.iter_files`); an empty directory is warned of."""
    files = []
    for path in map(Path, paths):
        found = list(iter_files([path]))
        if path.is_dir() and not found:
            log.warning("no files under %s", path)
        files += found
    return files


def _reading(files: list[Path], desc: str, progress: bool) -> Iterator[Path]:
    """*files*, with a bar of the bytes read (after each file) if reading takes long."""
    sizes = [_size(path) for path in files]
    with tqdm(total=sum(sizes), desc=desc, unit="B", unit_scale=True, file=sys.stderr,
              disable=None if progress else True, delay=PROGRESS_DELAY_S,
              dynamic_ncols=True) as bar:
        for path, size in zip(files, sizes, strict=True):
            yield path
            bar.update(size)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # gone or unreadable: dead-lettered when read
        return 0


def _spool_dir(pipeline: Pipeline) -> Path | None:
    """The cache directory: /tmp is often a tmpfs, whose files are memory after all."""
    folder = pipeline.config.cache_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot use %s for the replay's parked records (%s): using the "
                    "temporary directory", folder, exc)
        return None
    return folder


def feed(pipeline: Pipeline, records: Iterator[Record] | Iterable[Record],
         clock: StreamClock) -> int:
    """Process *records* in the order given, consecutive alerts in batches; how many."""
    run: list[Record] = []  # consecutive alerts, stored and matched in one transaction
    n = 0

    def flush() -> None:
        outcomes = pipeline.process_alerts(
            [Parsed(r.handler, r.raw, r.origin, item=r.item) for r in run])
        _clock(clock, run, outcomes)
        run.clear()

    for rec in records:
        n += 1
        if isinstance(rec.item, Alert):
            run.append(rec)
            if len(run) >= BATCH:
                flush()
            continue
        flush()
        outcome = pipeline.process(rec.handler, rec.raw, origin=rec.origin, item=rec.item,
                                   now=rec.time)
        _clock(clock, [rec], [outcome])
    flush()
    return n


def _clock(clock: StreamClock, records: list[Record], outcomes: list[Outcome]) -> None:
    for rec, outcome in zip(records, outcomes, strict=True):
        if outcome.kind in STORED:
            clock.stored(rec.time, rec.origin)


def process_spool(pipeline: Pipeline, registry: Registry, folder: Path, *,
                  max_bytes: int) -> int:
    """Process each file in the daemon's spool *folder* once, then move it to ``done/``.

    Bad records are dead-lettered with the file's path, as in a replay; the
    daemon's scheduler re-scores. Returns the number of files processed.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        processed = replay(pipeline, registry, [path], max_bytes=max_bytes,
                           rescore=False, progress=False)
        done = folder / "done"
        done.mkdir(exist_ok=True)
        path.replace(done / path.name)
        log.info("spool: %s processed (%d records), moved to done/", path.name, processed)
    return len(files)
