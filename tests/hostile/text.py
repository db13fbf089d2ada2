"""Files whose names, URLs and ids carry control characters, for the clean-logs tests.

Every string here carries :data:`HOSTILE`: a newline followed by a complete
forged log line, ESC ``[2J`` (clear the screen), a colour code, U+202E (right-to-
left override) and BEL. None of it may reach a log line or a table raw
(:mod:`mma.printable`).

:func:`cases` are: a hostile *file name* (the origin of every log line about
the file) on unreadable content (dead-lettered) and on a valid notice (stored);
a valid IceCube notice whose map URL carries the controls (stored: the URL
passes the handler's http(s) check, and is logged when fetching is off); and
alerts whose *object id* carries them (ZTF Avro, Pitt-Google, ANTARES), which
the handlers refuse (:mod:`mma.formats.ids`), so that the dead-letter line
itself, naming the id, is what must be clean.
"""

from __future__ import annotations

import io
import json
import unicodedata

import fastavro

from mma.printable import UNSAFE_CATEGORIES
from tests.conftest import CORPUS
from tests.hostile import Case

FORGED = "\n2026-12-05T00:00:00Z CRITICAL mma: forged"
TERMINAL = "\x1b[2J\x1b[31m\u202e\x07"  # clear screen, red, right-to-left override, bell
HOSTILE = FORGED + TERMINAL
# How it must be shown (Python's own escapes of the characters).
HOSTILE_SHOWN = "\\n2026-12-05T00:00:00Z CRITICAL mma: forged\\x1b[2J\\x1b[31m\\u202e\\x07"
# What must never appear raw in anything mma prints.
RAW_FORBIDDEN = ("\x1b", "\x07", "\u202e", "\r")

ZTF_AVRO = CORPUS / "alerts/ztf/avro"


def assert_clean(text: str) -> None:
    """Assert that *text* holds no character a terminal or a log reader would act on.

    Only LF is allowed, as the separator of the lines printed.
    """
    for ch in RAW_FORBIDDEN:
        assert ch not in text, f"raw {ch!r} in output"
    bad = {unicodedata.category(c) for c in text if c != "\n"} & UNSAFE_CATEGORIES
    assert not bad, f"characters of categories {sorted(bad)} in output"


def icecube_notice(run_event: str, *, healpix_url: str | None = None) -> bytes:
    """A valid IceCube gold/bronze track notice (GCN JSON) of event ``IceCube-<run_event>``.

    Parameters
    ----------
    run_event : str
        ``<run>_<event>`` (integers); distinct per case, so no case revises another's event.
    healpix_url : str, optional
        The map URL (``healpix_url``); a ``.fits.gz`` path passes the handler.
    """
    doc = {
        "$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/icecube/"
                   "single_neutrino_alerts.schema.json",
        "mission": "IceCube", "instrument": "IC86", "messenger": "Neutrino",
        "pipeline": "Gold Track Alert", "record_number": 1, "id": [run_event],
        "alert_datetime": "2025-03-01T05:42:00.0Z", "alert_type": "initial",
        "alert_tense": "current", "alert_topology": "Track", "number_of_events": 1,
        "ra": 123.4, "dec": -21.0, "ra_dec_error": 0.5, "containment_probability": 0.9,
        "systematic_included": False, "trigger_time": "2025-03-01T05:22:26.150574Z",
        "nu_energy": 127.29, "p_astro": 0.34, "far": 8.0e-8,
    }
    if healpix_url is not None:
        doc["healpix_url"] = healpix_url
    return json.dumps(doc).encode()


def _ztf_with_id(object_id: str) -> bytes:
    """The first corpus ZTF packet with its objectId replaced in place (same UTF-8 length)."""
    path = sorted(ZTF_AVRO.glob("ZTF*.avro"))[0]
    raw = path.read_bytes()
    record = next(iter(fastavro.reader(io.BytesIO(raw))))
    assert isinstance(record, dict)
    old = str(record["objectId"]).encode()
    new = object_id.encode()
    # Avro strings carry their byte length: keeping it keeps the container valid.
    assert len(new) == len(old) and raw.count(old) == 1, (old, new)
    return raw.replace(old, new)


def _pittgoogle(object_id: str) -> bytes:
    row = {"jd": 2460736.5, "fid": 2, "magpsf": 18.5, "sigmapsf": 0.08, "ra": 123.4,
           "decl": -21.0}
    return json.dumps({"objectId": object_id, "rows": [row]}).encode()


def _antares(locus_id: str) -> bytes:
    # LSST rows without a diaObjectId: the locus id becomes the object id.
    row = {"lsst_diaSource_psfFlux": 76925.4, "lsst_diaSource_psfFluxErr": 568.3,
           "lsst_diaSource_band": "i", "lsst_diaSource_midpointMjdTai": 61219.41,
           "lsst_diaSource_ra": 123.4, "lsst_diaSource_dec": -21.0}
    return json.dumps({"locus_id": locus_id, "ra": 123.4, "dec": -21.0,
                       "alerts": [row]}).encode()


def cases() -> list[Case]:
    """Hostile file names, map URL and object ids (see the module docstring)."""
    return [
        Case(name="text_forged_filename",
             filename=f"unreadable{HOSTILE}.json",
             data=b"not a notice\x1b[2J\x07" + FORGED.encode(),
             outcome="dead_letter", reason="no handler recognises content"),
        Case(name="text_forged_filename_notice",
             filename=f"icecube{HOSTILE}.json",
             data=icecube_notice("990001_1"), outcome="stored"),
        Case(name="text_forged_map_url",
             filename="icecube_map_url.json",
             data=icecube_notice("990002_2", healpix_url=(
                 f"https://roc.icecube.wisc.edu/map{HOSTILE}.fits.gz")),
             reason="not an http(s) URL of printable ASCII"),
        # The ZTF id keeps the 12 bytes of the packet's own: ZTF, ESC [2J, U+202E, BEL, LF.
        Case(name="text_ztf_object_id", filename="ztf_id.avro",
             data=_ztf_with_id("ZTF\x1b[2J\u202e\x07\n"), reason="printable ASCII"),
        Case(name="text_pittgoogle_object_id", filename="pittgoogle_id.json",
             data=_pittgoogle(f"ZTF25{HOSTILE}"), reason="printable ASCII"),
        Case(name="text_antares_locus_id", filename="antares_id.json",
             data=_antares(f"ANT2025{HOSTILE}"), reason="printable ASCII"),
    ]
