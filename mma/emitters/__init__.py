"""Emitters: deliver candidate messages to one channel each (Kafka, Slack, email).

A candidate is one optical object of one survey, with its detections in the event's
time window, scored against one multi-messenger event (``docs/candidate.md``); its
record is schema version 2 (``mma/schema/coincidence.schema.json``). Records migrated
from a version 1 database may still describe one alert (``alert_id``, ``alert_time``)
and lack the version 2 fields: emitters read every field with a fallback.

The outbox (:mod:`mma.outbox`) owns retries, backoff, ordering and parking;
an emitter only sends one :class:`Delivery` and says how it failed:

* return normally: delivered (the outbox marks the row sent);
* raise :class:`mma.errors.DeliveryError`: not delivered. ``retry_after``
  [s] asks for a later attempt no sooner than that (Slack 429 Retry-After);
  ``permanent=True`` parks the delivery at once (a 400 from a webhook, a
  refused recipient) instead of retrying it.

Emitters never touch the database; the email emitter gets the region, the light
curve and the cutouts to draw through :attr:`Delivery.region` and
:attr:`Delivery.context`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from mma.db.context import CandidateContext
    from mma.skymaps.region import Region

MessageKind = Literal["new", "update", "retraction"]


@dataclass(frozen=True)
class Delivery:
    """One message for one channel.

    Attributes
    ----------
    outbox_id : int
        The outbox row (unique per delivery attempt chain).
    channel : str
        Channel name (``kafka``, ``slack``, ``email``).
    coincidence_id : str
        Stable id of the candidate (event, survey, object); the Kafka message key.
    revision : int
        Revision of the candidate this message carries (1 = first); consumers
        keep the highest revision per coincidence_id.
    kind : {'new', 'update', 'retraction'}
        What happened.
    payload : mapping
        The candidate record, schema version 2 (``docs/candidate.md``,
        ``mma/schema/coincidence.schema.json``): the object (``object_id``,
        ``survey``, ``ra``/``dec`` [deg]), its ``detections`` and history, the
        scores, ``status``, ``rank`` and ``changes``. A record migrated from
        version 1 may carry ``alert_id``/``alert_time`` instead of the new fields.
    event : mapping
        Extras about the event for humans: ``properties`` of its notices (FAR in each
        handler's unit, HasNS, classification, urls...; see
        :mod:`mma.emitters.event_facts`), ``area90_deg2`` [deg²], ``test``; for human
        channels also ``notice_type`` (the newest notice) and ``distance_mpc``
        (``{"mean", "std"}`` [Mpc]) when known.
    region : Region or None
        The region the candidate was scored against (for pictures), if loaded.
    context : CandidateContext or None
        The object's light curve and newest cutouts (email pictures), if loaded.
    page_url : str or None
        mma's page of the event (``[pages] base_url``), when pages are served.
    """

    outbox_id: int
    channel: str
    coincidence_id: str
    revision: int
    kind: MessageKind
    payload: Mapping[str, Any]
    event: Mapping[str, Any]
    region: Region | None = None
    context: CandidateContext | None = None
    page_url: str | None = None


class Emitter(Protocol):
    """What the outbox needs of a channel."""

    name: str

    def send(self, delivery: Delivery) -> None:
        """Deliver or raise :class:`mma.errors.DeliveryError`."""
        ...

    def close(self) -> None:
        """Flush and release connections (called on shutdown)."""
        ...


class DigestEmitter(Emitter, Protocol):
    """A channel that can also send many deliveries as one message (``digest_minutes``)."""

    def send_digest(self, deliveries: Sequence[Delivery]) -> None:
        """Deliver all of *deliveries* in one message, or raise DeliveryError for all."""
        ...
