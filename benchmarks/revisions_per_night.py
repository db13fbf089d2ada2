"""Messages per candidate over a streamed corpus night with the periodic re-score.

Usage: ``python benchmarks/revisions_per_night.py [CORPUS [MAX_CREDIBLE_LEVEL]]`` (default
``../shared/corpus`` beside the repository, and the configured cut).

Replays the 15 real O4 LVK notices of 2024-01 and the real ZTF/Fink night of
2024-01-15 in stream-time order, as ``mma replay`` does, but re-scores every
15 minutes of stream time as the daemon's scheduler does (``daemon.rescore_interval_
seconds``), into a fresh SQLite database with the Kafka channel enabled (its outbox
rows are the messages a consumer would get; nothing is sent). Prints, per candidate,
how many messages were queued (new + updates + retraction): mean and maximum, and how
many re-scores ran. The script uses only the pipeline's public calls, so the same file
measures an older checkout for a before/after comparison.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, inspect, select, text

from mma.config import load_config
from mma.db.engine import make_engine, upgrade
from mma.db.schema import outbox
from mma.files import Spool, park, unpark
from mma.ingest import Parsed, Pipeline
from mma.models import Alert
from mma.registry import Registry

RESCORE_EVERY = timedelta(minutes=15)
BATCH = 500


def main(corpus: Path) -> None:
    paths = [corpus / "gcn-json/igwn-gwalert/O4-2024-01", corpus / "alerts/ztf/fink-2024-01-15"]
    tmp = Path(tempfile.mkdtemp(prefix="mma-revisions-"))
    env = {"MMA_PATHS__STATE_DIR": str(tmp), "MMA_CHANNELS__KAFKA__ENABLED": "true"}
    if len(sys.argv) > 2:  # the match cut, e.g. 0.9 to compare with older defaults
        env["MMA_SCORING__MAX_CREDIBLE_LEVEL"] = sys.argv[2]
    config = load_config(environ=env,
                         system_file=tmp / "none.toml")
    engine = make_engine(f"sqlite:///{tmp / 'night.sqlite'}")
    upgrade(engine)
    pipeline = Pipeline(engine, config)
    spool = Spool()
    keys = park(pipeline, Registry(), paths, spool, max_bytes=1 << 30)
    rescores = 0
    next_rescore = keys[0].time + RESCORE_EVERY
    run: list[Parsed] = []
    for entry in unpark(pipeline, keys, spool, max_bytes=1 << 30):
        while entry.time >= next_rescore:
            if run:
                pipeline.process_alerts(run)
                run = []
            pipeline.rescore(next_rescore)
            rescores += 1
            next_rescore += RESCORE_EVERY
        if isinstance(entry.item, Alert):
            run.append(Parsed(entry.handler, entry.raw, entry.origin, item=entry.item))
            if len(run) >= BATCH:
                pipeline.process_alerts(run)
                run = []
            continue
        if run:
            pipeline.process_alerts(run)
            run = []
        pipeline.process(entry.handler, entry.raw, origin=entry.origin, item=entry.item,
                         now=entry.time)
    pipeline.process_alerts(run)
    spool.close()
    pipeline.rescore(keys[-1].time)
    rescores += 1
    with engine.connect() as conn:
        per = Counter(dict(conn.execute(
            select(outbox.c.coincidence_id, func.count()).where(outbox.c.channel == "kafka")
            .group_by(outbox.c.coincidence_id)).all()))
    counts = sorted(per.values())
    print(f"records replayed: {len(keys)}; re-scores: {rescores}")
    if not counts:
        print("no candidate was published")
        return
    print(f"candidates published: {len(counts)}; messages: {sum(counts)}")
    print(f"messages per candidate: mean {sum(counts) / len(counts):.2f}, "
          f"median {counts[len(counts) // 2]}, max {counts[-1]}")
    print(f"messages per candidate per re-score: {sum(counts) / len(counts) / rescores:.3f}")
    _why(engine)


def _why(engine: Engine) -> None:
    """What the published updates changed (from the revision history, where there is one)."""
    if "coincidence_revisions" not in inspect(engine).get_table_names():
        return
    reasons: Counter[str] = Counter()
    with engine.connect() as conn:
        for changes, reason in conn.execute(text(
                "SELECT changes, reason FROM coincidence_revisions WHERE published")):
            names = json.loads(changes) if isinstance(changes, str) else changes
            reasons[f"{reason}: {'+'.join(names) or '-'}"] += 1
        quiet = conn.execute(text(
            "SELECT count(*) FROM coincidence_revisions WHERE NOT published")).scalar_one()
    print(f"re-scorings kept in the history but not published: {quiet}")
    for what, n in reasons.most_common(12):
        print(f"  published {n:5d}  {what}")


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[1]
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent / "shared" / "corpus")
