"""Commands that look at what the database holds: ``mma status``."""

from __future__ import annotations

import argparse

from mma.cli.common import add_db, read_engine
from mma.config import Config


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    """Print counts of what the database holds and the running daemons' heartbeats."""
    import json
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from mma.db import schema
    from mma.service.heartbeat import format_status, read_status

    interval = float(config.section("daemon").get("heartbeat_interval_seconds", 30.0))
    engine = read_engine(config, args.db)
    with engine.connect() as conn:
        counts: dict[str, int] = {}
        for table in (schema.events, schema.notices, schema.regions, schema.alerts,
                      schema.coincidences, schema.outbox, schema.dead_letters):
            counts[table.name] = conn.execute(select(func.count()).select_from(table)).scalar_one()
        active = conn.execute(select(func.count()).select_from(schema.regions).where(
            schema.regions.c.status == "active")).scalar_one()
        by_status: dict[str, int] = dict(conn.execute(
            select(schema.outbox.c.status, func.count()).group_by(schema.outbox.c.status)
        ).all())
        daemons = read_status(conn, now=datetime.now(UTC), stale_after_s=3 * interval)
    backlog, parked = by_status.get("pending", 0), by_status.get("parked", 0)
    if args.json:
        print(json.dumps({"counts": {**counts, "active_regions": active},
                          "outbox": {"backlog": backlog, "parked": parked},
                          "daemons": [d.to_json() for d in daemons]}))
        return 0
    for name, n in {**counts, "active regions": active}.items():
        print(f"{name:<14} {n}")
    print(f"outbox backlog {backlog}")
    print(f"parked deliveries {parked}")
    print("\n".join(format_status(daemons)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the looking commands to the ``mma`` parser."""
    p = sub.add_parser("status", help=cmd_status.__doc__, description=cmd_status.__doc__)
    add_db(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (counts, outbox, daemons) for monitoring")
    p.set_defaults(func=cmd_status)
