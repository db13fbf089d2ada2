"""What the subcommands share: opening the database, writing and reading tables.

Commands that only read never create or migrate a database
(:func:`read_engine`); commands that store (``ingest``, ``db upgrade``, the
daemon) migrate it (:func:`write_engine`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mma.config import Config
from mma.errors import MmaError
from mma.printable import printable

if TYPE_CHECKING:
    from sqlalchemy import Engine

Command = Callable[[argparse.Namespace, Config], int]


class UsageError(MmaError):
    """A command cannot run as asked (a missing input, an unknown id): exit status 1."""


def add_db(parser: argparse.ArgumentParser, default_help: str = "default: the configured database"
           ) -> None:
    """The ``--db URL`` option."""
    parser.add_argument("--db", help=f"SQLAlchemy database URL ({default_help})")


def add_json(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option: machine-readable output instead of a table."""
    parser.add_argument("--json", action="store_true",
                        help="print JSON (one object, or JSON Lines for lists) for scripts")


def write_engine(config: Config, url: str | None) -> Engine:
    """The database at *url* (else the configured one), created or migrated to head."""
    from mma.db.engine import make_engine, upgrade

    engine = make_engine(url or config.database_url)
    upgrade(engine)
    return engine


def read_engine(config: Config, url: str | None) -> Engine:
    """The database at *url* (else the configured one), which must exist at the schema's head.

    Never creates or migrates anything: a mistyped ``--db`` is an error, not
    an empty new database.

    Raises
    ------
    UsageError
        No such SQLite file, or a database without mma's tables or behind the
        code's schema (run ``mma db upgrade``).
    """
    from sqlalchemy.engine import make_url

    from mma.db.engine import is_current, make_engine

    target = url or config.database_url
    parsed = make_url(target)
    shown = parsed.render_as_string(hide_password=True)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).is_file():
        raise UsageError(f"no database at {shown} (mma db upgrade creates one)")
    engine = make_engine(target)
    if not is_current(engine):
        engine.dispose()
        raise UsageError(f"{shown} is not an mma database at the current schema "
                         "(run mma db upgrade)")
    return engine


def print_json(value: Any) -> None:
    """One JSON document on stdout (NaN refused; datetimes as ISO 8601)."""
    print(json.dumps(value, allow_nan=False, default=_iso))


def print_jsonl(rows: Sequence[Any]) -> None:
    """One JSON object per line on stdout."""
    for row in rows:
        sys.stdout.write(json.dumps(row, allow_nan=False, default=_iso) + "\n")


def _iso(value: Any) -> Any:
    isoformat = getattr(value, "isoformat", None)
    if isoformat is None:
        raise TypeError(f"not JSON serialisable: {value!r}")
    return isoformat()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain-text table with aligned columns; every cell through :func:`printable`."""
    cells = [[printable("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
