"""Commands that write the static HTML event pages (docs/pages.md).

``mma page EVENT`` writes one event's page, ``mma pages`` the index of the
active events and each of their pages, under ``-o DIR`` (default: the
configured pages directory, ``[pages] dir``). Both only read the database.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from mma.cli.common import UsageError, add_db, read_engine
from mma.config import Config
from mma.printable import printable


def _out_dir(args: argparse.Namespace, config: Config) -> Path:
    from mma.page import pages_dir

    return Path(args.output) if args.output else pages_dir(config)


def cmd_page(args: argparse.Namespace, config: Config) -> int:
    """Write the HTML page of one event (by id or alias); print its path."""
    from mma.page import write_event_page

    engine = read_engine(config, args.db)
    try:
        path = write_event_page(engine, args.event, _out_dir(args, config),
                                max_candidates=int(config.section("pages")["max_candidates"]))
    except LookupError as exc:
        raise UsageError(f"no event {args.event!r} in the database") from exc
    finally:
        engine.dispose()
    print(printable(str(path)))
    return 0


def cmd_pages(args: argparse.Namespace, config: Config) -> int:
    """Write the index of active events and the page of each; print the index's path."""
    from mma.page import write_event_page, write_index
    from mma.page.write import active_event_ids

    out = _out_dir(args, config)
    now = datetime.now(UTC)
    limit = int(config.section("pages")["max_candidates"])
    engine = read_engine(config, args.db)
    try:
        for event_id in active_event_ids(engine, now):
            write_event_page(engine, event_id, out, max_candidates=limit, now=now)
        path = write_index(engine, out, now=now)
    finally:
        engine.dispose()
    print(printable(str(path)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``page`` and ``pages`` to the ``mma`` parser."""
    p = sub.add_parser("page", help=cmd_page.__doc__, description=cmd_page.__doc__)
    p.add_argument("event", help="event id or alias")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="pages directory (default: [pages] dir); the page goes to "
                        "DIR/events/<event>/index.html")
    add_db(p)
    p.set_defaults(func=cmd_page)
    p = sub.add_parser("pages", help=cmd_pages.__doc__, description=cmd_pages.__doc__)
    p.add_argument("-o", "--output", metavar="DIR",
                   help="pages directory (default: [pages] dir)")
    add_db(p)
    p.set_defaults(func=cmd_pages)
