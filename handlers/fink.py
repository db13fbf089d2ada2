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
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mma.errors import HostileMessage, MalformedMessage, MissingField
from mma.formats.gcn_json import load_json
from mma.formats.history import prv_candidate_times
from mma.handlers.ztf import HISTORY_SOURCE, alert_from_candidate
from mma.models import Alert

__all__ = ["DEFAULT_TOPICS", "KIND", "NAME", "parse", "sniff", "split"]

logger = logging.getLogger(__name__)

NAME = "fink"
KIND = "alert"
DEFAULT_TOPICS: tuple[str, ...] = ()

PARQUET_MAGIC = b"PAR1"
MAX_FILE_BYTES = 2**30
MAX_DECODED_BYTES = 4 * 2**30  # uncompressed size of the columns read, from the footer
MAX_PAYLOAD_BYTES = 2**20

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
    if len(raw) < 12 or raw[:4] != PARQUET_MAGIC or raw[-4:] != PARQUET_MAGIC:
        raise MalformedMessage("not a parquet file (PAR1 magic missing at head or tail)")
    try:
        return pq.ParquetFile(pa.BufferReader(raw))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... on corrupt footers
        raise MalformedMessage(f"corrupt parquet footer: {type(exc).__name__}: {exc}") from exc


def _rows(raw: bytes) -> list[dict[str, Any]]:
    """Read the columns parse needs from a Fink parquet file, as JSON-safe dicts."""
    pfile = _open_parquet(raw)
    names = set(pfile.schema_arrow.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise MissingField(f"parquet file lacks the column(s) {', '.join(missing)}")
    wanted = [c for c in (*REQUIRED_COLUMNS, "schemavsn", "publisher", *FINK_COLUMNS) if c in names]
    # Only the history leaves (prv_candidates.list.element.jd...): the whole column
    # is 57 fields per entry, five times slower to read and convert.
    leaves = (pfile.schema.column(i).path for i in range(len(pfile.schema)))
    wanted += [path for path in leaves if path.startswith(f"{HISTORY_COLUMN}.")
               and path.rsplit(".", 1)[-1] in HISTORY_KEYS]
    meta = pfile.metadata
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if declared > MAX_DECODED_BYTES:  # guards against decompression bombs
        raise HostileMessage(f"parquet file declares {declared} uncompressed bytes")
    try:
        rows = pfile.read(columns=wanted).to_pylist()
    except Exception as exc:  # corrupt pages surface as assorted Arrow errors
        raise MalformedMessage(f"corrupt parquet data: {type(exc).__name__}: {exc}") from exc
    return [_payload(row) for row in rows]


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
    """True for a Fink parquet file (magic plus the expected columns) or a Fink payload."""
    if raw[:4] == PARQUET_MAGIC:
        try:
            names = set(_open_parquet(raw).schema_arrow.names)
        except (HostileMessage, MalformedMessage):
            return False
        return all(c in names for c in REQUIRED_COLUMNS) and SIGNATURE_COLUMN in names
    # Payloads written by split() start with the publisher key; the head is enough.
    return _JSON_PUBLISHER.match(raw[:256]) is not None and b'"candidate"' in raw


def split(raw: bytes) -> Iterator[bytes]:
    """One JSON payload per row of a Fink parquet file, in file order."""
    for row in _rows(raw):
        yield json.dumps(row, allow_nan=False, separators=(",", ":")).encode()


def parse(raw: bytes, *, topic: str) -> Alert:
    """Decode one Fink payload (JSON from :func:`split`, or a one-row parquet file).

    Raises
    ------
    HostileMessage, MalformedMessage
        Oversized, not JSON/parquet, corrupt, or a parquet file of several rows.
    MissingField, InvalidValue
        See :func:`mma.handlers.ztf.alert_from_candidate`.
    """
    if raw[:4] == PARQUET_MAGIC:
        rows = _rows(raw)
        if len(rows) != 1:
            raise MalformedMessage(f"parquet file holds {len(rows)} rows; split it first")
        return alert_from_payload(rows[0])
    return alert_from_payload(load_json(raw, max_bytes=MAX_PAYLOAD_BYTES))
