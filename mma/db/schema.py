"""SQLAlchemy tables of mma (Core, not ORM: the hot paths are bulk statements).

Sky positions are stored twice: as RA/Dec in degrees (ICRS) and as the
level-29 NESTED HEALPix index ``hpx29``; regions are stored as tiles
``[lo, hi)`` of level-29 indices with their probability density [sr^-1],
healpix-alchemy's representation, so "which stored alerts lie in this region"
is a range join on both SQLite and PostgreSQL. Everything derivable from the
tiles is recomputed, not stored, except the 50/90 % areas kept on the region
row for status displays and each tile's credible level, which the back-matching
join filters on (:mod:`mma.db.backmatch`).

Every timestamp is timezone-aware UTC (:class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no time zone, so values are normalised to UTC on the way in
    and marked UTC on the way out; naive datetimes are refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: mma stores UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


Id = Integer().with_variant(BigInteger(), "postgresql")

HISTORY_CAP = 64  # packet-history times kept per alert (alerts.history)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("messenger", String(16), nullable=False),
    # mma.models.EVENT_CLASSES: chooses the time window ([windows] in the configuration).
    # Always set by mma; nullable only because SQLite cannot add a NOT NULL column to a
    # table other rows refer to without rebuilding it (migration 0004).
    Column("event_class", String(32), nullable=True),
    Column("instrument", String(32), nullable=False),
    Column("event_time", UTCDateTime, nullable=False),
    # active | retracted (sticky: later notices are stored, flagged, and activate nothing)
    Column("status", String(16), nullable=False, default="active"),
    Column("test", Boolean, nullable=False, default=False),
    Column("properties", JSON, nullable=False, default=dict),
    # Vetoes and caveats of the latest notice (e.g. not_grb:..., low_significance),
    # carried onto every coincidence of the event.
    Column("flags", JSON, nullable=False, default=list),
    Column("created_at", UTCDateTime, nullable=False, default=_now),
    Column("updated_at", UTCDateTime, nullable=False, default=_now, onupdate=_now),
    # When a person muted the event (``mma mute``): the human channels get nothing new
    # about it, the Kafka topic still does. NULL: not muted.
    Column("muted_at", UTCDateTime, nullable=True),
)

event_aliases = Table(
    "event_aliases",
    metadata,
    Column("alias", String(64), primary_key=True),
    Column("event_pk", Id, ForeignKey("events.id"), nullable=False, index=True),
)

notices = Table(
    "notices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_pk", Id, ForeignKey("events.id"), nullable=False, index=True),
    Column("handler", String(32), nullable=False),
    Column("notice_type", String(32), nullable=False),
    Column("issued_time", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False, default=_now),
    Column("origin", Text, nullable=True),  # topic:partition:offset, or a file path
    Column("sha256", String(64), nullable=False, unique=True),  # idempotent re-ingest
    Column("raw", LargeBinary, nullable=False),
    Column("properties", JSON, nullable=False, default=dict),
    Column("flags", JSON, nullable=False, default=list),
)

regions = Table(
    "regions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_pk", Id, ForeignKey("events.id"), nullable=False),
    Column("notice_pk", Id, ForeignKey("notices.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    # active | superseded | retracted | expired
    Column("status", String(16), nullable=False, default="active", index=True),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("area50_deg2", Float, nullable=False),
    Column("area90_deg2", Float, nullable=False),
    Column("n_tiles", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=_now),
    UniqueConstraint("event_pk", "version"),
)

region_tiles = Table(
    "region_tiles",
    metadata,
    Column("region_pk", Id, ForeignKey("regions.id"), primary_key=True),
    Column("lo", BigInteger, primary_key=True),  # level-29 NESTED index, inclusive
    Column("hi", BigInteger, nullable=False),  # level-29 NESTED index, exclusive
    Column("probdensity", Float, nullable=False),  # sr^-1
    Column("distmu", Float, nullable=True),  # Mpc, conditional distance ansatz
    Column("distsigma", Float, nullable=True),  # Mpc
    Column("distnorm", Float, nullable=True),  # Mpc^-2
    # Searched probability of the tile (Region.credible_level). Derivable from the
    # densities, but stored so that back-matching can apply the credible-level cut
    # inside the SQL range join (mma.db.backmatch). NULL only for tiles stored
    # before migration 0002 and not yet backfilled; never NULL from store.add_region.
    Column("credible_level", Float, nullable=True),
)

objects = Table(
    "objects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("survey", String(16), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("ra_deg", Float, nullable=False),
    Column("dec_deg", Float, nullable=False),
    Column("first_time", UTCDateTime, nullable=False),
    Column("last_time", UTCDateTime, nullable=False),
    Column("n_alerts", Integer, nullable=False, default=1),
    UniqueConstraint("survey", "object_id"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("survey", String(16), nullable=False),
    Column("alert_id", String(64), nullable=False),
    Column("object_pk", Id, ForeignKey("objects.id"), nullable=False, index=True),
    Column("ra_deg", Float, nullable=False),
    Column("dec_deg", Float, nullable=False),
    Column("hpx29", BigInteger, nullable=False),
    Column("time", UTCDateTime, nullable=False, index=True),
    Column("band", String(8), nullable=True),
    Column("magnitude", Float, nullable=True),
    Column("magnitude_err", Float, nullable=True),
    Column("first_detection", UTCDateTime, nullable=True),
    Column("distance_mpc", Float, nullable=True),
    Column("broker", String(32), nullable=True),
    # Earlier >= 5 sigma positive detections the packet lists (mma.models.Alert.history),
    # the newest HISTORY_CAP as Unix seconds (UTC), and where they came from; NULL
    # source: the packet told nothing. Rubin repeats an object's year of history in
    # every alert: the newest 64 are what a window of days needs.
    Column("history", JSON, nullable=True),
    Column("history_source", String(32), nullable=True),
    Column("quality", JSON, nullable=False, default=dict),
    Column("vetoes", JSON, nullable=False, default=list),  # reasons it fails vetting
    Column("passes_vetting", Boolean, nullable=False),  # vetoes == [], indexable
    Column("received_at", UTCDateTime, nullable=False, default=_now),
    UniqueConstraint("survey", "alert_id"),
    Index(None, "survey", "passes_vetting", "time"),
    # Back-matching (mma.db.backmatch) seeks a range of hpx29 per region tile and
    # keeps the alerts in the time window: with time in the index, the window is
    # checked on index entries, and with object_pk the correlator's query (which
    # objects) is answered from the index alone, without visiting the rows.
    Index(None, "hpx29", "time", "object_pk"),
)

# The image stamps an alert packet carries (ZTF and Rubin science, template and
# difference cutouts), as the packet gives them: kind science | template | difference,
# format fits.gz (ZTF) | fits (Rubin).
cutouts = Table(
    "cutouts",
    metadata,
    Column("alert_pk", Id, ForeignKey("alerts.id"), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("format", String(16), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# The survey background (mma.match.background): per survey, night and HEALPix order-5
# NESTED pixel, the distinct objects first seen that night (n_new), the objects seen
# that night (n_all: an object once a night) and every alert, vetted or not
# (n_alerts: the night's exposure). Counters, incremented in the alert's transaction.
background_cells = Table(
    "background_cells",
    metadata,
    Column("survey", String(16), primary_key=True),
    Column("night", Integer, primary_key=True),  # mma.match.background.night_of
    Column("pixel", Integer, primary_key=True),
    Column("n_new", Integer, nullable=False),
    Column("n_all", Integer, nullable=False),
    Column("n_alerts", Integer, nullable=False),
)

# One candidate: an object scored against an event (docs/candidate.md). The payload,
# ln B, P_chance and revision are those last published; every re-score is kept in
# coincidence_revisions, published or not.
coincidences = Table(
    "coincidences",
    metadata,
    Column("coincidence_id", String(36), primary_key=True),
    Column("event_pk", Id, ForeignKey("events.id"), nullable=False, index=True),
    Column("object_pk", Id, ForeignKey("objects.id"), nullable=True, index=True),  # see event_class
    # The object's latest detection in the window when last scored (NULL: event x event).
    # Indexed: deleting an old alert (mma.db.retention) checks this reference.
    Column("alert_pk", Id, ForeignKey("alerts.id"), nullable=True, index=True),
    # The region scored against (NULL: an event x event pair whose first event has none).
    Column("region_pk", Id, ForeignKey("regions.id"), nullable=True),
    # The second event of an event x event coincidence (docs/joint.md); NULL for a candidate.
    Column("other_event_pk", Id, ForeignKey("events.id"), nullable=True, index=True),
    # active | updated | retracted
    Column("status", String(16), nullable=False),
    Column("vetoed", Boolean, nullable=False, default=False),
    Column("log_bayes_factor", Float, nullable=True),  # NULL: event x event
    Column("p_chance", Float, nullable=True),
    Column("rank", Integer, nullable=True),
    Column("revision", Integer, nullable=False, default=1),
    Column("payload", JSON, nullable=False),  # the published record (docs/candidate.md)
    Column("created_at", UTCDateTime, nullable=False, default=_now),
    Column("updated_at", UTCDateTime, nullable=False, default=_now, onupdate=_now),
)

# Every scoring of a candidate that changed anything: why, what, against which region,
# and whether it was published (a new revision) or kept quiet (below the thresholds).
# Consecutive quiet scorings of one revision against one region, for one reason, share
# a row (n_scorings, created_at = first, updated_at = last, numbers = last): a 15-minute
# re-score of a year-long neutrino window would otherwise add ~35,000 rows a candidate.
coincidence_revisions = Table(
    "coincidence_revisions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("coincidence_id", String(36), ForeignKey("coincidences.coincidence_id"),
           nullable=False, index=True),
    Column("revision", Integer, nullable=False),  # the published revision after this
    Column("published", Boolean, nullable=False),
    # new | new_detection | region | rescore | rank | retraction | left_region | ...
    Column("reason", String(32), nullable=False),
    Column("changes", JSON, nullable=False, default=list),  # field names that changed
    Column("region_pk", Id, ForeignKey("regions.id"), nullable=True),
    Column("region_version", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("credible_level", Float, nullable=True),
    Column("log_bayes_factor", Float, nullable=True),
    Column("p_chance", Float, nullable=True),
    Column("n_detections", Integer, nullable=True),
    Column("rank", Integer, nullable=True),
    Column("n_scorings", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime, nullable=False, default=_now),
    Column("updated_at", UTCDateTime, nullable=False, default=_now),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("coincidence_id", String(36), ForeignKey("coincidences.coincidence_id"),
           nullable=False),
    Column("revision", Integer, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    # pending | sent | parked
    Column("status", String(16), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False, default=_now),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=_now),
    Column("sent_at", UTCDateTime, nullable=True),
    # The daemon instance that last claimed the row (mma.outbox.release_claims).
    Column("claimed_by", String(128), nullable=True),
    Index(None, "status", "next_attempt_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False, default=_now),
    Column("source", String(64), nullable=False),  # handler name, or "replay"/"kafka"
    Column("origin", Text, nullable=True),  # topic:partition:offset, or a file path
    Column("error_type", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("raw", LargeBinary, nullable=False),
)

# Heartbeats of running daemons (mma.service.heartbeat), read by ``mma status``: one row per
# instance with source "" (the instance itself) and one per Kafka topic it consumes.
daemon_status = Table(
    "daemon_status",
    metadata,
    Column("instance", String(128), primary_key=True),
    Column("source", String(256), primary_key=True),  # Kafka topic, "" = the instance
    Column("messages", BigInteger, nullable=False, default=0),  # consumed since start
    Column("dead_letters", BigInteger, nullable=False, default=0),
    Column("lag", BigInteger, nullable=True),  # summed over partitions; NULL = unknown
    Column("last_message_at", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("host", String(256), nullable=False),
)
