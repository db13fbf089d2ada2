"""Domain objects passed between handlers, skymaps, the correlator and emitters.

All are frozen dataclasses, validated in ``__post_init__``: a handler that
builds one from bad values gets :class:`mma.errors.InvalidValue`, which the
ingest loop turns into a dead letter. Angles are degrees in ICRS; times are
timezone-aware UTC :class:`datetime.datetime`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mma.errors import InvalidValue

Messenger = Literal["gw", "neutrino", "grb", "xray", "optical", "watch"]
RegionKind = Literal["skymap", "circle", "ellipse", "box"]

#: Classes of events, each with its own time window (``[windows]`` in the configuration):
#: compact binary coalescences and unmodelled GW bursts, gamma-ray bursts, X-ray
#: transients, astrophysical neutrino tracks and cascades, neutrinos found by a search
#: around a GW (IceCube ``lvk_nu_track_search``), supernova neutrino bursts, and a
#: user's watch region (``mma watch``: a footprint with no t0, :mod:`mma.watch`).
# A Julian year [s]: rates stated per year (AMON FAR, astrophysical rates) to Hz.
SECONDS_PER_YEAR = 365.25 * 86400.0

EVENT_CLASSES = ("gw.cbc", "gw.burst", "grb", "xray", "neutrino.track", "neutrino.cascade",
                 "neutrino.gw_followup", "neutrino.sn_burst", "watch")
#: Classes where an object seen before t0 counts against it (``pre_existing``): a
#: merger or burst has no optical precursor. For neutrinos a flare rising before
#: t0 is the signal (a TDE or AGN).
PRE_EXISTING_CLASSES = ("gw.cbc", "gw.burst", "grb", "xray")
#: The class of an event whose handler names none.
DEFAULT_EVENT_CLASS = {"gw": "gw.cbc", "grb": "grb", "xray": "xray",
                       "neutrino": "neutrino.track"}


def event_class_of(messenger: str, stated: str | None = None) -> str:
    """The event class a notice states, else its messenger's default (X-ray if none)."""
    return stated or DEFAULT_EVENT_CLASS.get(messenger, "xray")


def check_utc(name: str, value: datetime | None) -> None:
    """Raise :class:`InvalidValue` unless *value* is None or timezone-aware UTC."""
    if value is None:
        return
    offset = value.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise InvalidValue(f"{name} must be timezone-aware UTC, got {value!r}")


def check_position(ra_deg: float, dec_deg: float) -> None:
    """Raise :class:`InvalidValue` unless RA in [0, 360) and Dec in [-90, 90] (deg)."""
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)):
        raise InvalidValue(f"non-finite position ra={ra_deg!r} dec={dec_deg!r}")
    if not (0.0 <= ra_deg < 360.0):
        raise InvalidValue(f"RA {ra_deg!r} deg outside [0, 360)")
    if not (-90.0 <= dec_deg <= 90.0):
        raise InvalidValue(f"Dec {dec_deg!r} deg outside [-90, 90]")


@dataclass(frozen=True)
class RegionSpec:
    """A sky region as the notice states it, before any HEALPix work.

    A notice with both a shape and a map URL (IceCube ``healpix_url``, GBM
    HEALPix products) gives ``kind`` of the shape plus ``skymap_url``: the
    shape is usable at once and the map, once fetched, supersedes it.

    Attributes
    ----------
    kind : {'skymap', 'circle', 'ellipse', 'box'}
    skymap : bytes, optional
        FITS bytes (possibly gzip-compressed) of a HEALPix map, flat or multi-order.
    skymap_url : str, optional
        Where a map can be downloaded.
    ra_deg, dec_deg : float, optional
        Centre of a circle, ellipse or box (ICRS, degrees).
    radius_deg : float, optional
        Circle radius (degrees) at probability ``containment``.
    semi_major_deg, semi_minor_deg, position_angle_deg : float, optional
        Ellipse semi-axes (degrees) at probability ``containment`` and the
        position angle of the major axis, east of north (degrees).
    ra_plus_deg, ra_minus_deg, dec_plus_deg, dec_minus_deg : float, optional
        Asymmetric box errors (degrees; RA errors are angles of RA, not on-sky
        arcs, as IceCube circulars give them) at probability ``containment``.
    containment : float
        Probability enclosed by the stated error (0.9; 0.3935 for a 2-D 1 sigma).
    systematic : str, optional
        Name of a systematic-error model to convolve with (e.g. ``fermi_gbm_gnd``),
        when the notice's error is statistical only.
    """

    kind: RegionKind
    skymap: bytes | None = None
    skymap_url: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    radius_deg: float | None = None
    semi_major_deg: float | None = None
    semi_minor_deg: float | None = None
    position_angle_deg: float | None = None
    ra_plus_deg: float | None = None
    ra_minus_deg: float | None = None
    dec_plus_deg: float | None = None
    dec_minus_deg: float | None = None
    containment: float = 0.9
    systematic: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "skymap" and self.skymap is None and self.skymap_url is None:
            raise InvalidValue("a skymap region needs inline bytes or a URL")
        if self.kind != "skymap":
            if self.ra_deg is None or self.dec_deg is None:
                raise InvalidValue(f"a {self.kind} region needs a centre")
            check_position(self.ra_deg, self.dec_deg)
        needed = {
            "circle": ("radius_deg",),
            "ellipse": ("semi_major_deg", "semi_minor_deg", "position_angle_deg"),
            "box": ("ra_plus_deg", "ra_minus_deg", "dec_plus_deg", "dec_minus_deg"),
        }.get(self.kind, ())
        for name in needed:
            value = getattr(self, name)
            if value is None:
                raise InvalidValue(f"a {self.kind} region needs {name}")
            if not math.isfinite(value):
                raise InvalidValue(f"{name} {value!r} is not finite")
            if name != "position_angle_deg" and not (0.0 < value <= 180.0):
                raise InvalidValue(f"{name} {value!r} deg outside (0, 180]")
        if (self.kind == "ellipse" and self.semi_minor_deg is not None
                and self.semi_major_deg is not None
                and self.semi_minor_deg > self.semi_major_deg):
            raise InvalidValue("ellipse semi-minor axis larger than semi-major axis")
        if not (0.0 < self.containment < 1.0):
            raise InvalidValue(f"containment {self.containment!r} outside (0, 1)")


@dataclass(frozen=True)
class Notice:
    """One notice about a multi-messenger event (GW, neutrino, GRB, X-ray).

    Attributes
    ----------
    event_id : str
        Canonical identifier (e.g. LVK superevent ``S240114aj``).
    messenger : str
        ``gw``, ``neutrino``, ``grb`` or ``xray``.
    instrument : str
        Facility that issued it (``LVK``, ``IceCube``, ``Fermi-GBM``...).
    notice_type : str
        The facility's notice type (``PRELIMINARY``, ``RETRACTION``, ``GND_POS``...).
    event_time : datetime
        Time of the event (merger, trigger), UTC.
    issued_time : datetime
        When the notice was created, UTC; orders notices of one event.
    region : RegionSpec or None
        The localisation; None for retractions and time-only notices.
    retraction : bool
        True if the notice withdraws the event.
    test : bool
        True for mock, test or injection events; never mixed with production output.
    aliases : tuple of str
        Other names of the same event.
    properties : mapping
        JSON-serialisable extras kept with the notice (FAR [Hz], classification...).
    flags : tuple of str
        Vetoes and caveats stated by the notice itself.
    event_class : str, optional
        One of :data:`EVENT_CLASSES`; None means the messenger's default
        (:data:`DEFAULT_EVENT_CLASS`). Sets the event's time window.
    joint_region : RegionSpec, optional
        A sky map the notice gives for the event jointly with another one (LVK's
        RAVEN ``external_coinc.combined_skymap``); optical matching of the pair's
        joint event then uses it instead of mma's own product.
    joint_with : tuple of str
        Names of that other event, as mma's handlers name it (``FermiGBM-<trigger>``).
    """

    event_id: str
    messenger: Messenger
    instrument: str
    notice_type: str
    event_time: datetime
    issued_time: datetime
    region: RegionSpec | None = None
    retraction: bool = False
    test: bool = False
    aliases: tuple[str, ...] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    event_class: str | None = None
    joint_region: RegionSpec | None = None
    joint_with: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.event_id:
            raise InvalidValue("empty event_id")
        if self.event_class is not None and self.event_class not in EVENT_CLASSES:
            raise InvalidValue(f"unknown event class {self.event_class!r}")
        check_utc("event_time", self.event_time)
        check_utc("issued_time", self.issued_time)


@dataclass(frozen=True)
class Alert:
    """One optical transient alert (a detection of an object by a survey).

    Attributes
    ----------
    alert_id : str
        Survey identifier of this alert (ZTF ``candid``, Rubin ``diaSourceId``).
    object_id : str
        Survey identifier of the object (ZTF ``objectId``, Rubin ``diaObjectId``).
    survey : str
        ``ZTF`` or ``LSST``.
    ra_deg, dec_deg : float
        Position (ICRS, degrees).
    time : datetime
        Time of the detection, UTC.
    band : str or None
        Filter name (``g``, ``r``, ``i``...).
    magnitude, magnitude_err : float or None
        PSF magnitude of the difference image and its 1-sigma error (AB mag).
    first_detection : datetime or None
        First detection of the object by the survey, UTC, if the packet says.
    quality : mapping
        Raw vetting fields (``rb``, ``drb``, ``isdiffpos``, ``ssdistnr``...).
    broker : str or None
        The broker the alert came through (``Fink``...), if any.
    distance_mpc : float or None
        Host luminosity distance [Mpc] when a broker provides one.
    history : tuple of datetime
        Times (UTC) of the object's earlier detections that the packet itself
        lists, keeping only positive difference detections at >= 5 sigma (ZTF
        ``prv_candidates`` with ``isdiffpos`` true and ``sigmapsf`` <= 0.2171
        mag; Rubin ``prvDiaSources`` with ``psfFlux / psfFluxErr`` >= 5, not
        negative). Empty when the packet carries none.
    history_source : str or None
        Where *history* came from (``ztf.prv_candidates``,
        ``lsst.prvDiaSources``...); None when the packet carries no history, so
        that "no earlier detection" and "not told" differ.
    cutouts : mapping of str to (str, bytes)
        Image stamps the packet carries, kind (``science``, ``template``,
        ``difference``) → (format ``fits.gz`` or ``fits``, the bytes as sent,
        unparsed). Empty when it carries none. Not part of equality or ``repr``:
        the same detection is the same alert with or without its pictures.
    """

    alert_id: str
    object_id: str
    survey: str
    ra_deg: float
    dec_deg: float
    time: datetime
    band: str | None = None
    magnitude: float | None = None
    magnitude_err: float | None = None
    first_detection: datetime | None = None
    quality: Mapping[str, Any] = field(default_factory=dict)
    broker: str | None = None
    distance_mpc: float | None = None
    history: tuple[datetime, ...] = ()
    history_source: str | None = None
    cutouts: Mapping[str, tuple[str, bytes]] = field(default_factory=dict, compare=False,
                                                     repr=False)

    def __post_init__(self) -> None:
        if not self.alert_id or not self.object_id:
            raise InvalidValue("empty alert_id or object_id")
        check_position(self.ra_deg, self.dec_deg)
        check_utc("time", self.time)
        check_utc("first_detection", self.first_detection)
        for when in self.history:
            check_utc("history", when)
        if self.distance_mpc is not None and not (
            math.isfinite(self.distance_mpc) and self.distance_mpc > 0
        ):
            raise InvalidValue(f"distance {self.distance_mpc!r} Mpc not positive and finite")


Item = Notice | Alert


@dataclass(frozen=True)
class StoredEvent:
    """An event as the database holds it: what matching and scoring need of it.

    Attributes
    ----------
    pk : int
        ``events.id``.
    event_id, messenger, event_class, instrument : str
        As in :class:`Notice`; ``event_class`` chooses the time window.
    event_time : datetime
        t0, UTC (the newest notice's).
    status : str
        ``active`` or ``retracted``.
    test : bool
        Mock, test or injection event.
    aliases : tuple of str
        Every name of the event, sorted (the event id included).
    properties : mapping
        The newest notice's extras (FAR [Hz], classification, significance...).
    flags : tuple of str
        The newest notice's vetoes and caveats.
    """

    pk: int
    event_id: str
    messenger: str
    event_class: str
    instrument: str
    event_time: datetime
    status: str
    test: bool
    aliases: tuple[str, ...]
    properties: Mapping[str, Any]
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Detection:
    """One stored alert of an object, as a candidate's detection.

    Attributes
    ----------
    alert_pk : int
        ``alerts.id``.
    alert_id : str
        Survey id of the alert.
    time : datetime
        Detection time, UTC.
    ra_deg, dec_deg : float
        Position (ICRS, degrees).
    hpx29 : int
        Level-29 NESTED HEALPix index of the position.
    band : str or None
    magnitude, magnitude_err : float or None
        AB mag of the difference image and its 1-sigma error.
    vetoes : tuple of str
        Why it fails vetting; empty when it passes.
    history : tuple of datetime
        Earlier >= 5 sigma positive detections its packet listed (UTC).
    history_source : str or None
        Where *history* came from; None when the packet told nothing.
    distance_mpc : float or None
        Host distance [Mpc] a broker gave.
    classes : mapping
        The broker's class fields of this alert, ``{broker: {field: value}}``
        (:func:`mma.match.classes.alert_classes`); empty for a survey's own alert.
    """

    alert_pk: int
    alert_id: str
    time: datetime
    ra_deg: float
    dec_deg: float
    hpx29: int
    band: str | None = None
    magnitude: float | None = None
    magnitude_err: float | None = None
    vetoes: tuple[str, ...] = ()
    history: tuple[datetime, ...] = ()
    history_source: str | None = None
    distance_mpc: float | None = None
    classes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    """An optical object and every stored detection of it up to some time.

    Attributes
    ----------
    pk : int
        ``objects.id``.
    survey, object_id : str
        The object.
    first_time : datetime
        Its first detection known to mma (stored alerts and packets' own
        first-detection fields), UTC.
    detections : tuple of Detection
        Stored alerts, sorted by time.
    """

    pk: int
    survey: str
    object_id: str
    first_time: datetime
    detections: tuple[Detection, ...]
