"""A Fink alert whose catalogued host lies 40 sigma beyond a GW map's distance.

No input here is malformed: a real LVK notice with distance layers (S240114b,
O4, 2024-01-14) and a real ZTF alert of the Fink night of 2024-01-15 inside its
90 % region, 1.16 d after the merger, whose Mangrove host match is moved to
``DISTMU + 40 DISTSIGMA`` of the map at the alert's position. The map's
distance density there underflows to 0, which once made ``ln B_D = -inf`` and a
record no JSON writer, SQLite ``json_extract`` or PostgreSQL JSON column takes.
Both files must be *stored*, and the candidate scored with finite numbers.
"""

from __future__ import annotations

import io
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mma.handlers import lvk
from mma.skymaps.decode import read_multiorder
from mma.skymaps.region import Region, build_region, hpx29
from tests.conftest import CORPUS
from tests.hostile import Case

NOTICE = CORPUS / "gcn-json/igwn-gwalert/O4-2024-01/S240114b-preliminary-1.json"
EVENT_ID = "S240114b"
NIGHT = CORPUS / "alerts/ztf/fink-2024-01-15"
# Inside the 90 % region (credible level 0.73), 1.16 d after t0, passing vetting.
OBJECT_ID = "ZTF20aafujpn"
SIGMAS = 40.0


@cache
def region() -> Region:
    """The notice's sky map, with its distance layers."""
    notice = lvk.parse(NOTICE.read_bytes(), topic="")
    assert notice.region is not None and notice.region.skymap is not None
    return build_region(read_multiorder(notice.region.skymap))


def host_distance_mpc(ra_deg: float, dec_deg: float, sigmas: float = SIGMAS) -> float:
    """``DISTMU + sigmas * DISTSIGMA`` [Mpc] of the map's tile at (RA, Dec) [deg]."""
    sky = region()
    assert sky.distmu is not None and sky.distsigma is not None
    tile = int(sky.lookup(hpx29(ra_deg, dec_deg)))
    assert tile >= 0, "the alert lies outside the map"
    return float(sky.distmu[tile] + sigmas * sky.distsigma[tile])


@cache
def fink_alert(sigmas: float = SIGMAS) -> bytes:
    """A one-row Fink parquet file: the real alert, its host moved *sigmas* out [bytes]."""
    for part in sorted(NIGHT.glob("*.parquet")):
        table = pq.read_table(part)
        table = table.filter(pc.equal(table["objectId"], OBJECT_ID))
        if table.num_rows:
            break
    else:
        raise AssertionError(f"{OBJECT_ID} is not in the Fink night")
    table = table.slice(0, 1)
    candidate = table["candidate"][0].as_py()
    distance = host_distance_mpc(candidate["ra"], candidate["dec"], sigmas)
    column = table.schema.get_field_index("mangrove")
    mangrove = pa.array([[("HyperLEDA_name", "hostile"), ("lum_dist", repr(distance))]],
                        type=table.schema.field("mangrove").type)
    out = io.BytesIO()
    pq.write_table(table.set_column(column, "mangrove", mangrove), out)
    return out.getvalue()


def cases() -> list[Case]:
    """The GW notice and the Fink alert: both stored, the candidate finite."""
    return [
        Case("gw_with_distance_layers", "S240114b-preliminary-1.json", NOTICE.read_bytes(),
             outcome="stored"),
        Case("fink_host_40_sigma_beyond", "fink_host_40_sigma_beyond.parquet", fink_alert(),
             outcome="stored"),
    ]
