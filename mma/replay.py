"""``mma replay`` and ``mma ingest``: files through the same pipeline as live messages.

Replay reads every file (directories recursively), detects each format from
its content, splits containers into records, parses them all, and processes
them in stream-time order (a notice at its issue time, an alert at its
detection time) so that windows and back-matching behave as they would live.
A file or record that cannot be read is dead-lettered with its path and the
replay goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from mma.errors import BadMessage, HostileMessage, Ignored
from mma.ingest import Handler, Parsed, Pipeline, parse_checked
from mma.models import Alert, Item, Notice
from mma.registry import Registry

log = logging.getLogger(__name__)

BATCH = 500  # alerts per transaction (consecutive in stream order, between notices)


@dataclass(order=True)
class Entry:
    """One parsed record waiting for its turn in stream-time order."""

    time: datetime
    seq: int
    origin: str = field(compare=False)
    handler: Handler = field(compare=False)
    raw: bytes = field(compare=False)
    item: Item = field(compare=False)


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files named by *paths*, directories walked recursively in sorted order."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file()
                              and not p.name.startswith("."))
        elif path.is_file():
            yield path
        else:
            log.error("%s: no such file or directory", path)


def _read_capped(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """Read at most *max_bytes* (+1 to detect overflow); True if the file is larger."""
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    return data[:max_bytes], len(data) > max_bytes


def collect(pipeline: Pipeline, registry: Registry, paths: Iterable[str | os.PathLike[str]],
            *, max_bytes: int) -> list[Entry]:
    """Parse every record of every file; bad ones are dead-lettered on the way."""
    entries: list[Entry] = []
    for path in iter_files(paths):
        raw, too_big = _read_capped(path, max_bytes)
        if too_big:
            pipeline.dead_letter("replay", str(path), HostileMessage(
                f"file larger than {max_bytes} bytes; first {max_bytes} bytes kept"), raw)
            continue
        index = 0
        try:
            # Records stream out of the file: those read before a broken block are kept,
            # and the whole file goes to the dead letters if it breaks.
            for index, (handler, payload) in enumerate(registry.iter_file(raw, str(path))):
                origin = f"{path}#{index}" if hasattr(handler, "split") else str(path)
                item = _parse(pipeline, handler, payload, origin)
                if item is not None:
                    when = item.issued_time if isinstance(item, Notice) else item.time
                    entries.append(Entry(when, len(entries), origin, handler, payload, item))
        except BadMessage as exc:
            pipeline.dead_letter("replay", f"{path} (after record {index})", exc, raw)
    entries.sort()
    return entries


def _parse(pipeline: Pipeline, handler: Handler, payload: bytes, origin: str) -> Item | None:
    """Parse one record; a bad one is dead-lettered and None returned."""
    try:
        return parse_checked(handler, payload)
    except Ignored as exc:
        pipeline.ignored(handler.NAME, origin, exc)
    except BadMessage as exc:
        pipeline.dead_letter(handler.NAME, origin, exc, payload)
    except Exception as exc:  # a handler bug must not stop the replay; the bytes are kept
        log.exception("%s: unexpected error in %s", origin, handler.NAME)
        pipeline.dead_letter(handler.NAME, origin, exc, payload)
    return None


def replay(pipeline: Pipeline, registry: Registry, paths: Iterable[str | os.PathLike[str]],
           *, max_bytes: int, progress_min_items: int = 200, ordered: bool = True,
           rescore: bool = True) -> int:
    """Process every record under *paths*; return how many were processed.

    With ``ordered=False`` (``mma ingest``) records go in file order instead of
    stream-time order. With ``rescore=False`` (the daemon's spool, whose scheduler
    re-scores) the final re-scoring is left out.
    """
    entries = collect(pipeline, registry, paths, max_bytes=max_bytes)
    if not ordered:
        entries.sort(key=lambda e: e.seq)
    bar = tqdm(entries, desc="replay", unit="msg", file=sys.stderr,
               disable=None if len(entries) >= progress_min_items else True)
    run: list[Parsed] = []  # consecutive alerts, stored and matched in one transaction
    for entry in bar:
        if isinstance(entry.item, Alert):
            run.append(Parsed(entry.handler, entry.raw, entry.origin, item=entry.item))
            if len(run) < BATCH:
                continue
        if run:
            pipeline.process_alerts(run)
            run = []
        if not isinstance(entry.item, Alert):
            pipeline.process(entry.handler, entry.raw, origin=entry.origin, item=entry.item,
                             now=entry.time)
    pipeline.process_alerts(run)
    if entries and rescore:
        # As the daemon's scheduler does: final scores use the background measured
        # from everything the stream delivered.
        pipeline.rescore(entries[-1].time)
    return len(entries)


def process_spool(pipeline: Pipeline, registry: Registry, folder: Path, *,
                  max_bytes: int) -> int:
    """Process each file in the daemon's spool *folder* once, then move it to ``done/``.

    Bad records are dead-lettered with the file's path, as in a replay; the
    daemon's scheduler re-scores. Returns the number of files processed.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        processed = replay(pipeline, registry, [path], max_bytes=max_bytes,
                           progress_min_items=10**9, rescore=False)
        done = folder / "done"
        done.mkdir(exist_ok=True)
        path.replace(done / path.name)
        log.info("spool: %s processed (%d records), moved to done/", path.name, processed)
    return len(files)
