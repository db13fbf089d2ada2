"""Records of files, for ``mma replay`` and ``mma ingest``: read, parsed, parked.

Every file (directories recursively) is read up to the message cap, its format
detected from its content, containers split into records, and each record
parsed and its times checked; a file or record that cannot be read is
dead-lettered with its path and the reading goes on (:func:`read_records`).

Memory does not grow with the input: a replay's first pass keeps only a small
:class:`Key` per record (its stream time and where to find it again) and parks
the parsed record on a temporary file (:class:`Spool`, :func:`park`); the
second pass reads the records back one at a time in key order
(:func:`unpark`). A file holding one record is read again from its path rather
than copied.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from mma.errors import BadMessage, HostileMessage, Ignored
from mma.ingest import Handler, Pipeline, parse_checked
from mma.models import Item, Notice
from mma.registry import Registry

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Record:
    """One parsed record, ready for the pipeline."""

    time: datetime
    origin: str
    handler: Handler
    raw: bytes
    item: Item


@dataclass(order=True, slots=True)
class Key:
    """Where to find a parked record again, sortable in stream-time order.

    Attributes
    ----------
    time : datetime
        Stream time (UTC): the notice's issue time or the alert's detection time.
    seq : int
        Position in reading order (ties keep file order).
    path : Path or None
        The file, when it holds this one record only (read again in pass two);
        None when the payload is parked on the spool with the item.
    """

    time: datetime
    seq: int
    origin: str = field(compare=False)
    handler: Handler = field(compare=False)
    path: Path | None = field(compare=False)
    offset: int = field(compare=False)
    length: int = field(compare=False)


class Spool:
    """Parsed records parked on an anonymous temporary file between the two passes."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        # Closed by close() / the with-block of the owner; deleted by the OS on close.
        self._fh: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="mma-replay-", dir=folder)
        self._end = 0

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def put(self, item: Item, payload: bytes | None) -> tuple[int, int]:
        """Park *item* (and *payload* unless its file can be read again); its place."""
        blob = pickle.dumps((item, payload), protocol=pickle.HIGHEST_PROTOCOL)
        self._fh.seek(self._end)
        self._fh.write(blob)
        offset, self._end = self._end, self._end + len(blob)
        return offset, len(blob)

    def get(self, offset: int, length: int) -> tuple[Item, bytes | None]:
        """The item and payload parked at *offset*."""
        self._fh.seek(offset)
        # Our own file, written by this process moments ago: unpickling is safe here.
        item, payload = pickle.loads(self._fh.read(length))
        return item, payload

    def close(self) -> None:
        """Close (and so delete) the temporary file."""
        self._fh.close()


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


def read_records(pipeline: Pipeline, registry: Registry,
                 paths: Iterable[str | os.PathLike[str]], *,
                 max_bytes: int) -> Iterator[tuple[Path, bool, Record]]:
    """Parse every record of every file in file order; bad ones are dead-lettered.

    Yields ``(path, alone, record)``: *alone* is True when the record is the
    whole file (it can be read again from *path*).
    """
    for path in iter_files(paths):
        try:
            raw, too_big = _read_capped(path, max_bytes)
        except OSError as exc:  # unreadable (permissions, I/O error): the others go on
            pipeline.dead_letter("replay", str(path), BadMessage(f"file unreadable: {exc}"), b"")
            continue
        if too_big:
            pipeline.dead_letter("replay", str(path), HostileMessage(
                f"file larger than {max_bytes} bytes; first {max_bytes} bytes kept"), raw)
            continue
        index = 0
        try:
            # Records stream out of the file: those read before a broken block are kept,
            # and the whole file goes to the dead letters if it breaks.
            for index, (handler, payload) in enumerate(registry.iter_file(raw, str(path))):
                alone = not hasattr(handler, "split")
                origin = str(path) if alone else f"{path}#{index}"
                item = _parse(pipeline, handler, payload, origin)
                if item is not None:
                    when = item.issued_time if isinstance(item, Notice) else item.time
                    yield path, alone, Record(when, origin, handler, payload, item)
        except BadMessage as exc:
            pipeline.dead_letter("replay", f"{path} (after record {index})", exc, raw)


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


def park(pipeline: Pipeline, registry: Registry, paths: Iterable[str | os.PathLike[str]],
         spool: Spool, *, max_bytes: int) -> list[Key]:
    """Pass one: parse every record, park it on *spool*; the keys in stream-time order."""
    keys = []
    for seq, (path, alone, rec) in enumerate(read_records(pipeline, registry, paths,
                                                          max_bytes=max_bytes)):
        offset, length = spool.put(rec.item, None if alone else rec.raw)
        keys.append(Key(rec.time, seq, rec.origin, rec.handler, path if alone else None,
                        offset, length))
    keys.sort()
    return keys


def unpark(pipeline: Pipeline, keys: Iterable[Key], spool: Spool, *,
           max_bytes: int) -> Iterator[Record]:
    """Pass two: the parked records, one at a time, in the order of *keys*."""
    for key in keys:
        item, payload = spool.get(key.offset, key.length)
        if payload is None:
            assert key.path is not None
            try:
                payload, _ = _read_capped(key.path, max_bytes)
            except OSError as exc:  # removed or unreadable since pass one
                pipeline.dead_letter(key.handler.NAME, key.origin, BadMessage(
                    f"file unreadable between the two passes of the replay: {exc}"), b"")
                continue
        yield Record(key.time, key.origin, key.handler, payload, item)
