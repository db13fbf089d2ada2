"""The pictures a candidate's mail carries beside its region: light curve and cutouts.

Drawn from :attr:`mma.emitters.Delivery.context` (the object's stored alerts and the
stamps of its newest alert with cutouts), never from the database. Each picture is a
nicety: one that cannot be drawn (a malformed stamp, no plotting back end) is logged
and left out, and the mail goes with the others.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from mma.emitters import Delivery
from mma.emitters.email_message import Picture

__all__ = ("context_pictures",)

log = logging.getLogger(__name__)


def _utc(text: object) -> datetime | None:
    """An ISO 8601 time of a record (``...Z``) as aware UTC; None when unreadable."""
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo else None


def context_pictures(delivery: Delivery) -> list[Picture]:
    """The object's light curve and newest cutout triplet, as inline pictures.

    Parameters
    ----------
    delivery : Delivery
        Its ``context`` (light curve, stamps) and record (``event_time`` = t0, ISO UTC;
        ``object_id``, ``survey``, ``event_id`` for the titles).

    Returns
    -------
    list of Picture
        ``lightcurve`` (magnitude against time since t0) when the object has points
        and t0 is readable, ``cutouts`` (science, template, difference) when a stamp
        can be drawn; empty without a context.
    """
    context = delivery.context
    if context is None:
        return []
    p = delivery.payload
    name = f"{p.get('object_id', '?')} ({p.get('survey', '?')})"
    pictures: list[Picture] = []
    try:
        from mma.emitters.lightcurve import render_light_curve_png
        from mma.emitters.stamps import render_stamps_png

        t0 = _utc(p.get("event_time"))
        if context.light and t0 is not None:
            pictures.append(Picture("lightcurve", render_light_curve_png(
                context.light, t0=t0, title=f"{name}, t0 = {p.get('event_id', '?')}"),
                "light curve of the object: magnitude against time since t0"))
        stamps = render_stamps_png(context.stamps, title=name) if context.stamps else None
        if stamps is not None:
            pictures.append(Picture("cutouts", stamps,
                                    "science, template and difference cutouts"))
    except Exception:  # pictures are a nicety; the mail goes with what was drawn
        log.warning("coincidence %s r%d: light curve or cutouts failed, sending without",
                    delivery.coincidence_id, delivery.revision, exc_info=True)
    return pictures
