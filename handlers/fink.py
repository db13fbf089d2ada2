"""ZTF alerts as enriched by the Fink broker (parquet night files) → :class:`~mma.models.Alert`.

A Fink night file holds many alerts, one per row: the ZTF packet fields
(``objectId``, ``candid``, ``candidate`` struct, ``prv_candidates``...) plus Fink's
science columns (``cdsxmatch``, ``roid``, classifier scores, the Mangrove host
match). :func:`split` turns each row into one JSON payload, which is what
:func:`parse` takes (a one-row parquet file is also accepted)::

    {"publisher": "Fink", "objectId": "ZTF18...", "candid": 2570213535515010011,
     "schemavsn": "4.02", "candidate": {...ZTF candidate fields...},
     "prv_candidates": [{"jd": 2460295.68, "candid": 2541181185515010013,
                         "isdiffpos": "f", "sigmapsf": 0.12}, ...],
     "fink": {"cdsxmatch": "LPV*", "roid": 0, "mangrove": {...}, ...}}

Of the ZTF history (``prv_candidates``) the payload keeps the detections (upper
limits, ``candid`` null, can never be history and are two thirds of the entries)
and of each only ``jd``, ``candid``, ``isdiffpos`` and ``sigmapsf``; :func:`parse`
turns them into ``Alert.history`` with :func:`mma.formats.history.prv_candidate_times`
(positive, >= 5 sigma, ``history_source="ztf.prv_candidates"``). A row whose
``prv_candidates`` is null, or a file without the column, gives no history
(``history_source`` None); an empty array gives an empty one. Light-curve
features and any binary cutout columns are dropped: nothing downstream of
``parse`` reads them. The ZTF field mapping is
:func:`mma.handlers.ztf.alert_from_candidate`, shared with the Avro handler.
Fink's ``timestamp`` column is ignored: in these files it is one hour off the
candidate ``jd`` (a local-time conversion), and ``jd`` is the measurement.

Bounds: the footer is read first, and a file declaring more than
:data:`MAX_FILE_ROWS` rows, or more history values than :data:`MAX_HISTORY_ENTRIES`
per row, is refused before any row is decoded; rows are then streamed
:data:`BATCH_ROWS` at a time (``ParquetFile.iter_batches``), each batch's history
lengths checked before it becomes Python objects. Any ``PAR1`` file is claimed,
so that a corrupt footer or a table without Fink's columns is refused by name.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mma.errors import HostileMessage, MalformedMessage, MissingField
from mma.formats import ids
from mma.formats.gcn_json import load_json
from mma.formats.history import prv_candidate_times
from mma.handlers import ztf
from mma.handlers.ztf import HISTORY_SOURCE, alert_from_candidate
from mma.models import Alert

__all__ = ["DEFAULT_TOPICS", "FIRST_LIGHT", "KIND", "NAME", "parse", "sniff", "split"]

logger = logging.getLogger(__name__)

NAME = "fink"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()
FIRST_LIGHT = ztf.FIRST_LIGHT  # Fink relays ZTF alerts: their times are ZTF's

PARQUET_MAGIC = b"PAR1"
MAX_FILE_BYTES = 2**30
MAX_DECODED_BYTES = 4 * 2**30  # uncompressed size of the columns read, from the footer
MAX_PAYLOAD_BYTES = 2**20
MAX_FILE_ROWS = 200_000
"""Most rows (alerts) one parquet file may hold, read from the footer before any row
is decoded: a Fink night's part holds up to about 150,000 alerts (the corpus's eight
parts about 106 each). A 1.7 MB file of a million identical rows took 3 GB in 8 s
when the file was decoded whole; such a file is now refused up front."""
MAX_HISTORY_ENTRIES = ztf.MAX_HISTORY_ENTRIES
"""Most ``prv_candidates`` entries one row may carry (as for a ZTF packet), checked in
the footer's value counts and on each batch's list lengths before any becomes Python."""
BATCH_ROWS = 256
"""Rows decoded at once: the file is streamed (``ParquetFile.iter_batches``), so memory
is a batch's, about 256 x 1,500 history entries at most, whatever the file's size."""

REQUIRED_COLUMNS = ("objectId", "candid", "candidate")
HISTORY_COLUMN = "prv_candidates"
HISTORY_KEYS = ("jd", "candid", "isdiffpos", "sigmapsf")
"""``prv_candidates`` fields the history needs; only these leaves are read from the file."""
SIGNATURE_COLUMN = "cdsxmatch"  # Fink's first science column; plain ZTF tables lack it
FINK_COLUMNS = (
    "cdsxmatch", "roid", "mulens", "rf_snia_vs_nonia", "snn_snia_vs_nonia", "snn_sn_vs_all",
    "rf_kn_vs_nonkn", "anomaly_score", "nalerthist", "DR3Name", "Plx", "e_Plx", "gcvs", "vsx",
    "x3hsp", "x4lac", "mangrove", "tracklet", "jd_first_real_det", "fink_broker_version",
    "fink_science_version",
)  # fmt: skip
"""Fink science columns kept in the payload and copied to ``quality`` as ``fink_<name>``."""

_JSON_PUBLISHER = re.compile(rb'^\s*\{\s*"publisher"\s*:\s*"Fink"')


def _clean(value: Any) -> Any:
    """Make a pyarrow Python value JSON-safe: NaN → None, map (pairs) → dict."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        if all(isinstance(p, tuple) and len(p) == 2 for p in value) and value:
            return {str(k): _clean(v) for k, v in value}
        return [_clean(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _open_parquet(raw: bytes) -> pq.ParquetFile:
    if len(raw) > MAX_FILE_BYTES:
        raise HostileMessage(f"parquet file is {len(raw)} bytes, above the cap {MAX_FILE_BYTES}")
    if raw[:4] != PARQUET_MAGIC:
        raise MalformedMessage("not a parquet file (PAR1 magic missing at the head)")
    if len(raw) < 12 or raw[-4:] != PARQUET_MAGIC:
        raise MalformedMessage("corrupt parquet file: PAR1 magic missing at the end "
                               "(truncated, or the footer is damaged)")
    try:
        return pq.ParquetFile(pa.BufferReader(raw))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... on corrupt footers
        raise MalformedMessage(f"corrupt parquet footer: {type(exc).__name__}: "
                               f"{ids.escaped(str(exc))}") from exc


def _check_footer(pfile: pq.ParquetFile, history_leaves: list[int]) -> None:
    """Refuse from the footer alone: too many rows, bytes or history values."""
    meta = pfile.metadata
    if meta.num_rows > MAX_FILE_ROWS:
        raise HostileMessage(f"parquet file declares {meta.num_rows} rows, above the cap of "
                             f"{MAX_FILE_ROWS} rows per file")
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if declared > MAX_DECODED_BYTES:  # guards against decompression bombs
        raise HostileMessage(f"parquet file declares {declared} uncompressed bytes")
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        # One value per entry, and one per row whose list is empty or null.
        limit = group.num_rows * (MAX_HISTORY_ENTRIES + 1)
        for leaf in history_leaves:
            if group.column(leaf).num_values > limit:
                raise HostileMessage(
                    f"parquet row group {i} holds {group.column(leaf).num_values} "
                    f"{HISTORY_COLUMN} values for {group.num_rows} rows, above the cap of "
                    f"{MAX_HISTORY_ENTRIES} entries per row")


def _reader(raw: bytes) -> tuple[pq.ParquetFile, list[str]]:
    """Open a Fink parquet file and check its footer; return it and the columns to read."""
    pfile = _open_parquet(raw)
    names = set(pfile.schema_arrow.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise MissingField(f"parquet file lacks the column(s) {', '.join(missing)}")
    if SIGNATURE_COLUMN not in names:
        raise MissingField(f"parquet file lacks Fink's column {SIGNATURE_COLUMN}: a ZTF table "
                           "that did not come through Fink")
    wanted = [c for c in (*REQUIRED_COLUMNS, "schemavsn", "publisher", *FINK_COLUMNS) if c in names]
    # Only the history leaves (prv_candidates.list.element.jd...): the whole column
    # is 57 fields per entry, five times slower to read and convert.
    leaves = [i for i in range(len(pfile.schema))
              if pfile.schema.column(i).path.startswith(f"{HISTORY_COLUMN}.")
              and pfile.schema.column(i).path.rsplit(".", 1)[-1] in HISTORY_KEYS]
    _check_footer(pfile, leaves)
    return pfile, wanted + [pfile.schema.column(i).path for i in leaves]


def _check_history(batch: pa.RecordBatch, first_row: int) -> None:
    """Refuse a batch with a row whose ``prv_candidates`` exceeds the cap, before to_pylist."""
    if HISTORY_COLUMN not in batch.schema.names:
        return
    lengths = pc.list_value_length(batch.column(HISTORY_COLUMN))
    longest = pc.max(lengths).as_py()
    if longest is not None and longest > MAX_HISTORY_ENTRIES:
        row = first_row + pc.index(lengths, longest).as_py()
        raise HostileMessage(f"parquet row {row}: {HISTORY_COLUMN} holds {longest} entries, "
                             f"above the cap of {MAX_HISTORY_ENTRIES}")


def _rows(pfile: pq.ParquetFile, wanted: list[str]) -> Iterator[dict[str, Any]]:
    """The payload of each row, streamed a batch of :data:`BATCH_ROWS` at a time."""
    batches = pfile.iter_batches(batch_size=BATCH_ROWS, columns=wanted)
    seen = 0
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # corrupt pages surface as assorted Arrow errors
            raise MalformedMessage(f"corrupt parquet data after row {seen}: "
                                   f"{type(exc).__name__}: {ids.escaped(str(exc))}") from exc
        if batch is None:
            return
        _check_history(batch, seen)
        seen += batch.num_rows
        if seen > MAX_FILE_ROWS:  # the footer understated its rows
            raise HostileMessage(f"parquet file holds more than {MAX_FILE_ROWS} rows "
                                 "(the cap per file)")
        for row in batch.to_pylist():
            yield _payload(row)


def _history(entries: Any) -> list[dict[str, Any]] | None:
    """The detections of a ``prv_candidates`` value, with :data:`HISTORY_KEYS` only."""
    if not isinstance(entries, list):
        return None
    return [{k: _clean(e.get(k)) for k in HISTORY_KEYS} for e in entries
            if isinstance(e, dict) and e.get("candid") is not None]


def _payload(row: Mapping[str, Any]) -> dict[str, Any]:
    fink = {k: _clean(row[k]) for k in FINK_COLUMNS if k in row}
    if isinstance(fink.get("mangrove"), dict):  # Fink writes 'None' strings for no host
        fink["mangrove"] = {k: None if v == "None" else v for k, v in fink["mangrove"].items()}
    payload = {
        "publisher": row.get("publisher") or "Fink",
        "objectId": row.get("objectId"),
        "candid": row.get("candid"),
        "schemavsn": row.get("schemavsn"),
        "candidate": _clean(row.get("candidate")),
    }
    if HISTORY_COLUMN in row:  # absent from the payload when the file has no such column
        payload[HISTORY_COLUMN] = _history(row[HISTORY_COLUMN])
    payload["fink"] = fink
    return payload


def _host_distance(mangrove: Any) -> float | None:
    """Luminosity distance [Mpc] of the Mangrove host match, if there is one."""
    if not isinstance(mangrove, Mapping):
        return None
    try:
        distance = float(mangrove.get("lum_dist") or "nan")
    except (TypeError, ValueError):
        return None
    return distance if math.isfinite(distance) and distance > 0 else None


def alert_from_payload(payload: Mapping[str, Any]) -> Alert:
    """Map one Fink payload (see the module docstring) to an Alert with ``broker='Fink'``.

    ``history`` comes from the payload's ``prv_candidates`` (JD UTC → UTC
    datetimes of the positive >= 5 sigma detections); none when it is absent
    or null.
    """
    candidate = payload.get("candidate")
    if not isinstance(candidate, Mapping):
        raise MissingField("candidate record is missing")
    entries = payload.get(HISTORY_COLUMN)
    if isinstance(entries, list) and len(entries) > MAX_HISTORY_ENTRIES:
        raise HostileMessage(f"{HISTORY_COLUMN} holds {len(entries)} entries, above the cap "
                             f"of {MAX_HISTORY_ENTRIES}")
    fink = payload.get("fink")
    fink = fink if isinstance(fink, Mapping) else {}
    extra = {k if k.startswith("fink_") else f"fink_{k}": v for k, v in fink.items()}
    extra["schemavsn"] = payload.get("schemavsn")
    return alert_from_candidate(
        candidate,
        object_id=payload.get("objectId"),
        candid=payload.get("candid"),
        broker="Fink",
        extra_quality=extra,
        distance_mpc=_host_distance(fink.get("mangrove")),
        history=prv_candidate_times(payload.get(HISTORY_COLUMN), candid=payload.get("candid")),
        history_source=HISTORY_SOURCE,
    )


def sniff(raw: bytes) -> bool:
    """True for a parquet file (Fink's alert tables are the only parquet read) or a Fink payload.

    Any ``PAR1`` head is claimed, footer unread: a corrupt file or a table without
    Fink's columns is then refused by :func:`split` or :func:`parse` saying which.
    """
    if raw[:4] == PARQUET_MAGIC:
        return True
    # Payloads written by split() start with the publisher key; the head is enough.
    return _JSON_PUBLISHER.match(raw[:256]) is not None and b'"candidate"' in raw


def split(raw: bytes) -> Iterator[bytes]:
    """One JSON payload per row of a Fink parquet file, in file order, streamed.

    The footer is checked first (:data:`MAX_FILE_ROWS`, history sizes); rows are
    then decoded :data:`BATCH_ROWS` at a time, never the whole table at once.
    """
    pfile, wanted = _reader(raw)
    for row in _rows(pfile, wanted):
        yield json.dumps(row, allow_nan=False, separators=(",", ":")).encode()


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one Fink payload (JSON from :func:`split`, or a one-row parquet file).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized, over a cap, not JSON/parquet, corrupt, or a parquet file of
        several rows.
    MissingField, InvalidValue
        See :func:`mma.handlers.ztf.alert_from_candidate`.
    """
    if raw[:4] == PARQUET_MAGIC:
        pfile, wanted = _reader(raw)
        if pfile.metadata.num_rows != 1:
            raise MalformedMessage(f"parquet file holds {pfile.metadata.num_rows} rows; "
                                   "split it first")
        return alert_from_payload(next(_rows(pfile, wanted)))
    return alert_from_payload(load_json(raw, max_bytes=MAX_PAYLOAD_BYTES))
