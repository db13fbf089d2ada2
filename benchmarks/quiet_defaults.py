"""How many of a replay's candidates the default Slack rules let through, before and after.

"Before" is the Slack rules as they were until flags could be excluded (the
defaults with ``exclude_flags = []``; test events were already dropped), "after"
the defaults of ``mma/default.toml``; both also with ``max_p_chance = 1``, to
show the flags' effect whatever the P_chance cut. Also printed: Kafka's defaults,
and for each excluded flag how many of the "before" candidates it stops on its
own (the flags overlap: one candidate often carries several). The deliveries
are decided by :func:`mma.outbox.enqueue`, which the daemon runs (it calls
:func:`mma.channels.passes` per channel with the stored event and region), inside
a transaction that is rolled back: the database is left as it was. Run on
replays kept with ``--db``::

    .venv/bin/mma replay CORPUS/gcn-json/igwn-gwalert/O4-2024-01 \\
        CORPUS/alerts/ztf/fink-2024-01-15 --db sqlite:///o4.sqlite -o /dev/null
    .venv/bin/mma replay CORPUS/voevent/gcn-2024-01-fink-mm \\
        CORPUS/alerts/ztf/fink-2024-01-15 --db sqlite:///grb.sqlite -o /dev/null
    .venv/bin/python benchmarks/quiet_defaults.py sqlite:///o4.sqlite sqlite:///grb.sqlite

where CORPUS is the sample-data corpus (``tests.conftest.CORPUS``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, select

from mma import outbox
from mma.config import load_config
from mma.db.schema import outbox as outbox_table
from mma.report import records


def channel_rules() -> dict[str, Mapping[str, Any]]:
    """The rule sets compared, by (fake) channel name.

    ``<set>`` uses the Slack defaults, ``<set>/p1`` the same with
    ``max_p_chance = 1`` (the flags' own effect, whatever the P_chance cut);
    ``only:<flag>`` excludes that one flag only (and test events, as before).
    """
    config = load_config(environ={})
    slack = dict(config.section("channels.slack.rules"))
    rules: dict[str, Mapping[str, Any]] = {"kafka": config.section("channels.kafka.rules")}
    for suffix, extra in (("", {}), ("/p1", {"max_p_chance": 1.0})):
        rules["before" + suffix] = {**slack, **extra, "exclude_flags": []}
        rules["after" + suffix] = {**slack, **extra}
        # As if the background were measured (a replay of one night never is).
        rules["after-bg" + suffix] = {**slack, **extra, "exclude_flags": [
            f for f in slack["exclude_flags"] if f != "background_unmeasured"]}
        for flag in slack["exclude_flags"]:
            rules[f"only:{flag}{suffix}"] = {**slack, **extra, "exclude_flags": [flag]}
    assert all(len(name) <= 32 for name in rules)  # the outbox.channel column
    return rules


def count(url: str) -> tuple[int, Counter[str], Counter[str]]:
    """Candidates (live, unvetoed, not retracted), deliveries per rule set, flag counts."""
    engine = create_engine(url)
    flags: Counter[str] = Counter()
    with engine.connect() as conn, conn.begin() as tx:
        live = [r for r in records(conn, include_test=True) if r["kind"] != "retraction"]
        for r in live:
            flags.update(str(f).split(":", 1)[0] for f in r["flags"])
        outbox.enqueue(conn, channel_rules(), [r["coincidence_id"] for r in live],
                       datetime.now(UTC))
        sent = Counter(row.channel for row in conn.execute(select(outbox_table.c.channel)))
        tx.rollback()
    engine.dispose()
    return len(live), sent, flags


def main(urls: list[str]) -> int:
    """Print the figures of each database URL."""
    excluded = load_config(environ={}).section("channels.slack.rules")["exclude_flags"]
    for url in urls:
        total, sent, flags = count(url)
        print(f"{url}: {total} candidates, Kafka gets {sent['kafka']}")
        print("  flags: " + ", ".join(f"{k} {v}" for k, v in flags.most_common()))
        for suffix, label in (("", "default max_p_chance"), ("/p1", "max_p_chance = 1")):
            before = sent["before" + suffix]
            stops = ", ".join(f"{flag} {before - sent[f'only:{flag}{suffix}']}"
                              for flag in excluded)
            print(f"  Slack ({label}): before {before}, after {sent['after' + suffix]} "
                  f"({sent['after-bg' + suffix]} without background_unmeasured); "
                  f"of the before, each exclusion on its own stops: {stops}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
