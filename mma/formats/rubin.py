"""Bundled Rubin/LSST alert schemas, and the MJD TAI → UTC conversion of their epochs.

The ``lsst/alert_packet`` schemas v7.1, v9.0, v10.0 and v11.0 ship in
``rubin_schemas/v<MAJOR>_<MINOR>/``, one ``.avsc`` file per named record, and are
parsed with fastavro on first use and cached by schema id (``MAJOR*100 + MINOR``,
the id the Rubin producer writes after the Confluent magic byte). Loading a
version also compiles its generated decoders (:mod:`mma.formats.rubin_decoders`):
:class:`~mma.formats.rubin_decoders.Prefix` for the fields up to and including
``diaSource`` and :class:`~mma.formats.rubin_decoders.History` for
``prvDiaSources``, right after it.

Of what follows ``prvDiaSources`` the Alert needs only
``diaObject.firstDiaSourceMjdTai`` (v9+; in v7 the first detection must come from
``prvDiaSources`` itself). :meth:`RubinSchema.tail` reads the rest (forced
sources, ``diaObject``, cutouts) with fastavro and a reader schema holding only
the ``diaObject`` fields wanted and the cutouts, so it skips everything else in
C; this also walks the rest of the message, so truncation and trailing bytes are
still caught. The cutouts are read as bytes, not parsed as FITS, and become the
alert's stamps (``Alert.cutouts``) as they are.
"""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import erfa
import fastavro

from mma.errors import HostileMessage, InvalidValue, MalformedMessage, UnknownFormat
from mma.formats.ids import escaped
from mma.formats.rubin_decoders import History, Prefix, compile_history, compile_prefix

__all__ = [
    "SCHEMA_DIR", "RubinSchema", "describe_ids", "known_ids", "load", "plausible_id",
    "schema_id_of_name", "tai_mjd_to_utc",
]

logger = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).with_name("rubin_schemas")
_NAME = re.compile(r"^lsst\.v(\d+)_(\d+)\.alert$")


@dataclass(frozen=True)
class RubinSchema:
    """One bundled alert schema version, parsed and ready to decode.

    Attributes
    ----------
    schema_id : int
        ``MAJOR*100 + MINOR`` (v9.0 → 900), as in the Confluent header.
    version : str
        ``"9.0"``.
    parsed : dict
        The full alert schema, parsed by fastavro (all named records resolved).
    prefix : Prefix
        Leading-fields decoder (see :mod:`mma.formats.rubin_decoders`).
    history : History
        ``prvDiaSources`` decoder, for the field right after the prefix.
    """

    schema_id: int
    version: str
    parsed: dict[str, Any]
    prefix: Prefix
    history: History
    tail_writer: dict[str, Any]
    tail_reader: dict[str, Any]

    def decode_full(self, raw: bytes, offset: int, *, max_bytes: int) -> dict[str, Any]:
        """Decode the whole schemaless alert at *offset* (cutouts included)."""
        from mma.formats import avro

        return avro.decode_schemaless(raw, self.parsed, max_bytes=max_bytes, offset=offset)

    def tail(self, raw: bytes, offset: int) -> dict[str, Any]:
        """Read the fields after ``diaSource`` from *offset*: history, first detection, cutouts.

        Returns ``{"prvDiaSources": [{"midpointMjdTai": ..., "psfFlux": ...,
        "psfFluxErr": ..., "isNegative": ...}, ...] | None, "diaObject":
        {"diaObjectId": ..., "firstDiaSourceMjdTai": ..., ...} | None,
        "cutoutScience": bytes | None, ...}``; items
        hold the :data:`~mma.formats.rubin_decoders.HISTORY_FIELDS` of this version
        (no ``isNegative`` in v7).

        Raises
        ------
        MalformedMessage
            Truncated or corrupt history, cutouts, or bytes left after the record.
        """
        history, offset = self.history.decode(raw, offset)
        stream = io.BytesIO(raw)
        stream.seek(offset)
        try:
            record = fastavro.schemaless_reader(stream, self.tail_writer, self.tail_reader)
        except Exception as exc:  # fastavro surfaces corruption as assorted builtins
            raise MalformedMessage(f"corrupt Rubin alert after diaSource: "
                                   f"{type(exc).__name__}: {escaped(str(exc))}") from exc
        if stream.tell() != len(raw):
            raise MalformedMessage(f"{len(raw) - stream.tell()} bytes left after the Avro record")
        if not isinstance(record, dict):
            raise MalformedMessage("Rubin alert tail is not a record")
        record["prvDiaSources"] = history
        return record


def _read_dir(path: Path) -> dict[str, dict[str, Any]]:
    """Raw JSON of every ``.avsc`` in *path*, keyed by full name (``lsst.v9_0.diaSource``)."""
    out = {}
    for file in sorted(path.glob("*.avsc")):
        schema = json.loads(file.read_text(encoding="utf-8"))
        out[f"{schema['namespace']}.{schema['name']}"] = schema
    return out


def _parse_all(raw: dict[str, dict[str, Any]], top: dict[str, Any]) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for name, schema in raw.items():
        if not name.endswith(".alert"):
            fastavro.parse_schema(schema, named_schemas=named)
    parsed = fastavro.parse_schema(top, named_schemas=named)
    assert isinstance(parsed, dict)  # a record schema parses to a dict
    return parsed


def _tail_schemas(raw: dict[str, dict[str, Any]], alert: dict[str, Any], ns: str,
                  n_lead: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Writer and reader schemas of what follows ``prvDiaSources`` (``History`` reads it)."""
    rest = alert["fields"][n_lead + 1:]
    writer = {**alert, "name": "alertTail", "fields": rest}
    keep_obj = {"diaObjectId", "firstDiaSourceMjdTai", "lastDiaSourceMjdTai", "nDiaSources"}
    obj = raw[f"{ns}.diaObject"]
    reader_obj = {**obj, "fields": [f for f in obj["fields"] if f["name"] in keep_obj]}
    fields = [{"name": "diaObject", "type": ["null", reader_obj], "default": None}]
    # The cutouts are read, not skipped: fastavro's skip seeks without checking
    # the length, so a message cut inside its last cutout would pass unnoticed.
    fields += [f for f in rest if f["name"].startswith("cutout")]
    reader = {"type": "record", "name": "alertTail", "namespace": ns, "fields": fields}
    parsed_reader = fastavro.parse_schema(reader, named_schemas={})
    assert isinstance(parsed_reader, dict)
    return _parse_all(raw, writer), parsed_reader


@cache
def known_ids() -> dict[int, Path]:
    """Schema id → directory of every bundled schema version (read once: ``sniff`` asks often)."""
    out = {}
    for path in SCHEMA_DIR.iterdir():
        match = re.fullmatch(r"v(\d+)_(\d+)", path.name)
        if match and path.is_dir():
            out[int(match[1]) * 100 + int(match[2])] = path
    return out


def plausible_id(schema_id: int) -> bool:
    """True for an id of the form ``MAJOR*100 + MINOR`` with MAJOR 1–99: a Rubin schema id.

    What tells a Rubin frame of a version not bundled from other bytes that
    happen to start with ``0x00`` (a run of NULs has id 0).
    """
    return 100 <= schema_id <= 9999


def describe_ids() -> str:
    """The bundled schema ids with their versions: ``701 (v7.1), 900 (v9.0)...``."""
    return ", ".join(f"{i} (v{i // 100}.{i % 100})" for i in sorted(known_ids()))


def schema_id_of_name(name: Any) -> int | None:
    """``lsst.v9_0.alert`` → 900; None for any other record name."""
    match = _NAME.match(name) if isinstance(name, str) else None
    return int(match[1]) * 100 + int(match[2]) if match else None


@cache
def load(schema_id: int) -> RubinSchema:
    """The bundled schema for *schema_id*, parsed once and cached.

    Raises
    ------
    UnknownFormat
        No bundled schema has this id (the message names it and the known ones).
    """
    path = known_ids().get(schema_id)
    if path is None:
        version = f" (v{schema_id // 100}.{schema_id % 100})" if plausible_id(schema_id) else ""
        raise UnknownFormat(f"Rubin schema id {schema_id}{version} is not bundled "
                            f"(known: {describe_ids()})")
    raw = _read_dir(path)
    ns = f"lsst.{path.name}"
    alert = raw[f"{ns}.alert"]
    prefix = compile_prefix(alert, raw[f"{ns}.diaSource"])
    history = compile_history(alert["fields"][len(prefix.fields)], raw[f"{ns}.diaSource"])
    writer, reader = _tail_schemas(raw, alert, ns, len(prefix.fields))
    logger.debug("loaded Rubin alert schema %s (id %d)", ns, schema_id)
    return RubinSchema(
        schema_id=schema_id, version=f"{schema_id // 100}.{schema_id % 100}",
        parsed=_parse_all(raw, alert), prefix=prefix, history=history, tail_writer=writer,
        tail_reader=reader,
    )


def check_size(raw: bytes, max_bytes: int) -> None:
    """Raise HostileMessage if *raw* is larger than *max_bytes*."""
    if len(raw) > max_bytes:
        raise HostileMessage(f"Rubin alert is {len(raw)} bytes, above the cap of {max_bytes}")


_MJD_UNIX_EPOCH = 40587.0
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Rubin began in 2025; an MJD outside 1972–2100 is a corrupt field (the v7.1
# sample packet holds a Unix time there), and erfa has no leap seconds before 1972.
MJD_MIN, MJD_MAX = 41317.0, 88069.0


@cache
def _tai_minus_utc(mjd_day: int) -> float:
    """TAI − UTC [s] on the UTC day starting at MJD *mjd_day* (erfa's leap-second table)."""
    year, month, day, _ = erfa.jd2cal(2400000.5, float(mjd_day))
    return float(erfa.dat(int(year), int(month), int(day), 0.0))


def tai_mjd_to_utc(mjd_tai: float) -> datetime:
    """Convert an MJD on the TAI scale (Rubin ``midpointMjdTai``) to an aware UTC datetime.

    Leap seconds come from erfa's table (what ``astropy.time.Time`` uses; no
    network), cached per day: TAI − UTC is 37 s since 2017. Agrees with
    ``Time(mjd, format="mjd", scale="tai").utc`` to the float's resolution
    (about 1 µs), except inside an inserted leap second, which a datetime
    cannot represent.

    Raises
    ------
    InvalidValue
        Not finite, or outside MJD 41317–88069 (1972–2100).
    """
    if not MJD_MIN <= mjd_tai <= MJD_MAX:  # False for NaN as well
        raise InvalidValue(f"MJD (TAI) {mjd_tai!r} is not a time in 1972–2100")
    offset = _tai_minus_utc(int(mjd_tai))
    utc = mjd_tai - offset / 86400.0
    if int(utc) != int(mjd_tai):  # within 37 s after TAI midnight: the UTC day is the day before
        offset = _tai_minus_utc(int(utc))
        utc = mjd_tai - offset / 86400.0
    return _UNIX_EPOCH + timedelta(days=mjd_tai - _MJD_UNIX_EPOCH, seconds=-offset)
