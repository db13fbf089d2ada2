"""Find the handler for a Kafka topic or for a file's content.

Handlers are the modules of :mod:`mma.handlers`; :meth:`Registry.discover` imports
each one with :mod:`pkgutil` and checks it against the contract written in
``handlers/__init__.py`` before the daemon consumes anything, so a broken
module stops start-up with a :class:`~mma.errors.ConfigError` naming it rather
than failing on its first message.

Topics: each handler claims its ``DEFAULT_TOPICS`` unless the configuration maps
its NAME to other topics. A claim starting with ``^`` is a regular expression,
as in Kafka subscriptions (ZTF's nightly ``^ztf_.*_programid1$``); exact claims
win over patterns.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, Protocol, cast

from mma.errors import BadMessage, ConfigError, UnknownFormat
from mma.formats import avro
from mma.formats.encoding import not_utf8
from mma.formats.ids import shown
from mma.models import Alert, Notice

__all__ = ["KINDS", "Handler", "Registry", "discover", "unrecognised"]

logger = logging.getLogger(__name__)

KINDS = frozenset({"notice", "alert"})


class Handler(Protocol):
    """What a handler module provides (``sniff`` and ``split`` are optional extras).

    Attributes
    ----------
    NAME : str
        Unique short name (``lvk``, ``ztf``...).
    KIND : str
        ``notice`` or ``alert``.
    DEFAULT_TOPICS : tuple of str
        Kafka topics claimed unless the configuration remaps them.
    """

    NAME: str
    KIND: str
    DEFAULT_TOPICS: tuple[str, ...]

    def parse(self, raw: bytes, *, topic: str) -> Notice | Alert:
        """Turn one message into a domain object; raise only BadMessage subclasses."""
        ...


def _check(module: Any) -> Handler:
    """Raise ConfigError unless *module* honours the handler contract."""
    where = getattr(module, "__name__", repr(module))
    name = getattr(module, "NAME", None)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"handler {where}: NAME must be a lower-case identifier, got {name!r}")
    kind = getattr(module, "KIND", None)
    if kind not in KINDS:
        raise ConfigError(f"handler {where}: KIND must be one of {sorted(KINDS)}, got {kind!r}")
    topics = getattr(module, "DEFAULT_TOPICS", None)
    if not isinstance(topics, tuple) or not all(isinstance(t, str) and t for t in topics):
        raise ConfigError(f"handler {where}: DEFAULT_TOPICS must be a tuple of topic names")
    if not callable(getattr(module, "parse", None)):
        raise ConfigError(f"handler {where}: parse(raw, *, topic) is missing")
    for optional in ("sniff", "split"):
        if hasattr(module, optional) and not callable(getattr(module, optional)):
            raise ConfigError(f"handler {where}: {optional} must be a function")
    return cast(Handler, module)


def _topic_list(name: str, topics: Any) -> tuple[str, ...]:
    # A bare string is a sequence too: "igwn.gwalert" would become 12 topics.
    if isinstance(topics, str | bytes) or not isinstance(topics, Sequence):
        raise ConfigError(f"topics for handler {name!r} must be a list of names, got {topics!r}")
    if not all(isinstance(t, str) and t for t in topics):
        raise ConfigError(f"topics for handler {name!r} must be non-empty strings")
    for topic in topics:
        if topic.startswith("^"):
            try:
                re.compile(topic)
            except re.error as exc:
                raise ConfigError(f"topic pattern {topic!r} of {name!r}: {exc}") from exc
    return tuple(topics)


def discover(package: str = "mma.handlers") -> list[ModuleType]:
    """Import every public module of *package* (sorted by name) and return them.

    Modules whose name starts with ``_`` are skipped. A module that fails to
    import is a ConfigError naming it: a broken installation must stop start-up.
    """
    pkg = importlib.import_module(package)
    modules = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        qualified = f"{package}.{info.name}"
        try:
            modules.append(importlib.import_module(qualified))
        except Exception as exc:  # any import failure is a broken installation
            raise ConfigError(f"handler module {qualified} failed to import: {exc}") from exc
    logger.debug("handler modules found: %s", [m.__name__ for m in modules])
    return modules


class Registry:
    """The handlers in use and the topics each one claims.

    Parameters
    ----------
    handlers : iterable of modules, optional
        Handler modules; each is checked against the contract. Default: every
        module of :mod:`mma.handlers` (:func:`discover`).
    topics : mapping of str to sequence of str, optional
        Configuration override: handler NAME → the topics it claims instead of
        its ``DEFAULT_TOPICS`` (an empty list claims none).

    Raises
    ------
    ConfigError
        A module breaks the contract, two handlers share a NAME or a topic, or
        *topics* names an unknown handler.
    """

    def __init__(
        self,
        handlers: Iterable[ModuleType | Handler] | None = None,
        *,
        topics: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._by_name: dict[str, Handler] = {}
        for module in discover() if handlers is None else handlers:
            handler = _check(module)
            if handler.NAME in self._by_name:
                raise ConfigError(f"two handlers are named {handler.NAME!r}")
            self._by_name[handler.NAME] = handler
        overrides = dict(topics or {})
        unknown = sorted(set(overrides) - set(self._by_name))
        if unknown:
            raise ConfigError(f"topics configured for unknown handler(s) {unknown}")
        self._topics: dict[str, tuple[str, ...]] = {}
        owner: dict[str, str] = {}
        for name, handler in sorted(self._by_name.items()):
            claimed = _topic_list(name, overrides.get(name, handler.DEFAULT_TOPICS))
            for topic in claimed:
                if topic in owner:
                    raise ConfigError(
                        f"topic {topic!r} is claimed by {owner[topic]!r} and {name!r}"
                    )
                owner[topic] = name
            self._topics[name] = claimed
        self._exact = {t: n for t, n in owner.items() if not t.startswith("^")}
        self._patterns = [(re.compile(t), n) for t, n in owner.items() if t.startswith("^")]

    @classmethod
    def discover(
        cls, package: str = "mma.handlers", *, topics: Mapping[str, Sequence[str]] | None = None
    ) -> Registry:
        """A Registry of every handler module found in *package* (see :func:`discover`)."""
        return cls(discover(package), topics=topics)

    @property
    def handlers(self) -> tuple[Handler, ...]:
        """All handlers, ordered by NAME (the order :meth:`detect` tries them in)."""
        return tuple(self._by_name[n] for n in sorted(self._by_name))

    def topics(self, name: str | None = None) -> tuple[str, ...]:
        """Topics (and ``^`` patterns) claimed by handler *name*, or by all handlers."""
        if name is not None:
            return self._topics[self.by_name(name).NAME]
        return tuple(t for n in sorted(self._topics) for t in self._topics[n])

    def by_name(self, name: str) -> Handler:
        """The handler called *name*; ConfigError if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigError(
                f"no handler named {name!r}; known: {sorted(self._by_name)}"
            ) from None

    def for_topic(self, topic: str) -> Handler:
        """The handler that claims *topic* (exact claims first, then ``^`` patterns).

        Raises
        ------
        UnknownFormat
            No handler claims the topic (the message is dead-lettered).
        ConfigError
            Two patterns of different handlers match it.
        """
        name = self._exact.get(topic)
        if name is None:
            matches = {n for pattern, n in self._patterns if pattern.search(topic)}
            if len(matches) > 1:
                raise ConfigError(f"topic {topic!r} matches patterns of {sorted(matches)}")
            if not matches:
                raise UnknownFormat(f"no handler claims topic {topic!r}")
            name = matches.pop()
        return self._by_name[name]

    def detect(self, raw: bytes) -> Handler:
        """The first handler whose ``sniff`` recognises *raw*: by NAME, fallbacks last.

        Raises
        ------
        MalformedMessage
            No handler recognises the content, and it is text in UTF-16/32 or an
            Avro container with a corrupt header (:func:`unrecognised`).
        UnknownFormat
            No handler recognises the content (the reason says what it looks like).
        """
        # Catch-alls (FALLBACK = True, e.g. "a VOEvent nobody claims") go last.
        ordered = sorted(self.handlers, key=lambda h: bool(getattr(h, "FALLBACK", False)))
        for handler in ordered:
            sniff = cast(Callable[[bytes], bool] | None, getattr(handler, "sniff", None))
            if sniff is None:
                continue
            try:
                if sniff(raw):
                    return handler
            except Exception:  # a sniff must not raise; treat a crash as "not mine"
                logger.exception("sniff of handler %s raised", handler.NAME)
        raise unrecognised(raw)

    def iter_file(
        self, raw: bytes, path: str | os.PathLike[str] = "<bytes>"
    ) -> Iterator[tuple[Handler, bytes]]:
        """Yield ``(handler, payload)`` for each message a file holds.

        The handler is found from the content (:meth:`detect`); a handler with
        ``split`` cuts the file into per-message payloads, otherwise the whole
        file is one message. Errors name *path*.
        """
        where = os.fspath(path)
        try:
            handler = self.detect(raw)
            split = cast(Callable[[bytes], Iterable[bytes]] | None, getattr(handler, "split", None))
            if split is None:
                yield handler, raw
                return
            logger.debug("splitting %s with handler %s", where, handler.NAME)
            for payload in split(raw):
                yield handler, payload
        except BadMessage as exc:
            # Same class, so callers still tell hostile from malformed; the path is added.
            raise type(exc)(f"{where}: {exc}") from exc


_MAX_REGISTRY_ID = 65535


def unrecognised(raw: bytes) -> BadMessage:
    """Why no handler recognises *raw*, as precisely as its first bytes tell.

    Text in UTF-16/32 and an Avro container with a corrupt header are
    :class:`~mma.errors.MalformedMessage`: the content is recognised, not its
    encoding or header. An Avro container of a schema nobody reads, a Confluent
    frame of an unknown schema id and anything else are
    :class:`~mma.errors.UnknownFormat`, the last saying how the content starts
    (escaped: never the sender's bytes raw).
    """
    refusal = not_utf8(raw)
    if refusal is not None:
        return refusal
    if avro.is_container(raw):
        try:
            schema = avro.container_schema(raw, max_bytes=len(raw))
        except BadMessage as exc:
            return exc  # "corrupt Avro container header: ..."
        return UnknownFormat(f"Avro object container of schema {shown(schema.get('name'))}, "
                             "which no handler reads")
    schema_id = int.from_bytes(raw[1:5], "big")
    # A schema registry numbers its schemas from 1; a larger id is more likely not a frame.
    if len(raw) > 5 and raw[0] == 0 and 0 < schema_id <= _MAX_REGISTRY_ID:
        return UnknownFormat(f"Confluent wire-format frame (magic byte 0x00) of schema id "
                             f"{schema_id}, which no handler reads")
    return UnknownFormat(f"no handler recognises content starting {raw[:16]!r} "
                         f"({len(raw)} bytes)")


class Unclaimed:
    """The "handler" of a Kafka message no handler claims: its dead letter says ``kafka``."""

    NAME = "kafka"
    KIND = "unclaimed"

    def parse(self, raw: bytes, *, topic: str) -> Alert:
        raise UnknownFormat(f"no handler for topic {topic!r}")


UNCLAIMED = Unclaimed()
