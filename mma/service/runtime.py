"""What a configuration reload replaces while the daemon runs: settings, handlers, pipeline.

The daemon's parts (:mod:`mma.service.intake`, :mod:`mma.service.consume`,
:mod:`mma.service.jobs`) hold one :class:`Runtime` and read its fields when they
need them, so that :meth:`Runtime.swap` on SIGHUP reaches all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from mma.config import Config
from mma.ingest import Pipeline
from mma.registry import Registry
from mma.service.sources import registry_of
from mma.skymaps.fetch import fetcher_from_config


@dataclass
class Runtime:
    """The configuration in force, with the registry and pipeline built from it."""

    config: Config
    registry: Registry
    pipeline: Pipeline

    @classmethod
    def build(cls, engine: Engine, config: Config) -> Runtime:
        """Build the registry and pipeline of *config* on *engine*.

        Raises
        ------
        ConfigError
            The configuration cannot be used (bad topics, priors, fetch settings...).
        """
        fetch = fetcher_from_config(config) if config.section("skymaps")["fetch"] else None
        return cls(config, registry_of(config), Pipeline(engine, config, fetch=fetch))

    def swap(self, new: Runtime) -> None:
        """Take over *new*'s configuration, registry and pipeline (main loop only)."""
        self.config, self.registry, self.pipeline = new.config, new.registry, new.pipeline
