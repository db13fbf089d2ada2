"""``mma run`` against a real Kafka broker: event x event coincidences and one event per burst.

Real notices on three topics, as GCN sends them: the LVC Initial notice of GW170817
and the Fermi GBM ground position of GRB 170817A (2.0 s apart), and the Swift BAT
and Fermi GBM notices of the 2024-01-12 burst. The daemon publishes the GW x GRB
coincidence on its output topic (on time alone: maps are not fetched here) and
keeps the 2024-01-12 burst as one event with both missions' names.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from mma.db.engine import make_engine
from mma.db.schema import event_aliases, events
from tests.test_daemon import MMA, _drain_topic, _env, _produce

pytestmark = pytest.mark.daemon  # runs mma as a subprocess

JAN12 = "voevent/gcn-2024-01-fink-mm"


def test_run_publishes_event_pairs_and_merges_bursts(tmp_path: Path, corpus: Path,
                                                     kafka_bootstrap: str) -> None:
    stem = uuid.uuid4().hex[:8]
    t_gw, t_gbm, t_swift, t_out = (f"{k}-{stem}" for k in ("gw", "gbm", "swift", "out"))
    _produce(kafka_bootstrap, t_gw,
             [(corpus / "voevent/gw/G298048-1-Initial_GW170817.xml").read_bytes()])
    _produce(kafka_bootstrap, t_gbm, [
        (corpus / "voevent/fermi-gbm/GRB170817A_GBM_Gnd_Pos_524666471.xml").read_bytes(),
        (corpus / JAN12 / "GBM_Flt_Pos_2024-01-12T173725.12_726773850_43-264.xml").read_bytes(),
        (corpus / JAN12 / "GBM_Gnd_Pos_2024-01-12T173725.12_726773850_57-268.xml").read_bytes()])
    _produce(kafka_bootstrap, t_swift,
             [(corpus / JAN12 / "BAT_GRB_Pos_1208389-262.xml").read_bytes()])
    db = f"sqlite:///{tmp_path / 'run.sqlite'}"
    env = _env(db, tmp_path, kafka_bootstrap, stem, t_gw, f"unused-{stem}",
               MMA_KAFKA__NOTICE_TOPICS=json.dumps([
                   f"lvk_voevent:{t_gw}", f"fermi_gbm:{t_gbm}", f"swift:{t_swift}"]),
               MMA_KAFKA__ALERT_TOPICS="[]", MMA_PAGES__ENABLED="false",
               MMA_KAFKA__POLL_TIMEOUT_SECONDS="0.5", MMA_CHANNELS__KAFKA__ENABLED="true",
               MMA_CHANNELS__KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
               MMA_CHANNELS__KAFKA__TOPIC=t_out)
    proc = subprocess.run([MMA, "run", "--idle-exit", "6"], env=env, text=True, check=False,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    messages = _drain_topic(kafka_bootstrap, t_out)
    pairs = [json.loads(m.value()) for m in messages
             if dict(m.headers() or []).get("mma-coincidence-type") == b"event-event"]
    (pair,) = [p for p in pairs if p["event_id"] == "G298048"]
    assert pair["other"]["event_id"] == "FermiGBM-524666471"
    assert pair["dt_s"] == pytest.approx(2.024, abs=0.01)
    assert pair["temporal_far_hz"] is not None and pair["overlap_integral"] is None
    assert pair["kind"] == "new"

    engine = make_engine(db)
    with engine.connect() as conn:
        names: dict[str, set[str]] = {}
        for event_id, alias in conn.execute(select(events.c.event_id, event_aliases.c.alias)
                                            .join(event_aliases,
                                                  event_aliases.c.event_pk == events.c.id)):
            names.setdefault(event_id, set()).add(alias)
    engine.dispose()
    # Which mission names the event depends on which topic the daemon read first.
    burst = {"Swift-1208389", "FermiGBM-726773850"}
    assert [n for n in names.values() if n & burst] == [burst]
