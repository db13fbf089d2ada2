"""Shared fixtures: databases (SQLite and a real PostgreSQL), the corpus, configuration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mma.config import Config, load_config
from mma.db.engine import make_engine, upgrade

# One definition of each service fixture for the whole session (a fixture imported into
# two test modules would be two session fixtures: two Playwright drivers at once).
pytest_plugins = ["tests.services.fixtures", "tests.services.browser"]

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real-data corpus beside the repository (../shared/corpus)."""
    if not CORPUS.is_dir():
        raise RuntimeError(f"the corpus is missing at {CORPUS}: CI runs with ../shared beside")
    return CORPUS


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Defaults, with state and cache under the test's temporary directory."""
    return load_config(environ={"MMA_PATHS__STATE_DIR": str(tmp_path / "state"),
                                "MMA_PATHS__CACHE_DIR": str(tmp_path / "cache")},
                       system_file=tmp_path / "absent.toml")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: SQLite in a temp dir, and a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on *db_url* with the schema migrated to head."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


KAFKA_FIXTURES = {"kafka_broker", "kafka_bootstrap", "kafka_topic"}
POSTGRES_FIXTURES = {"postgres_server", "postgres_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by the real services it uses (``--fast`` leaves these out).

    ``kafka`` and ``postgres`` follow from the fixtures a test requests, or from a
    fixture parameter ``"postgresql"`` (a fixture that starts the server itself);
    ``daemon`` and ``slow`` are set by the test modules themselves.
    """
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if names & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if names & POSTGRES_FIXTURES or any(
                isinstance(v, str) and v == "postgresql" for v in params.values()):
            item.add_marker(pytest.mark.postgres)
