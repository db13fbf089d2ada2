"""Configuration: one TOML file validated against the packaged defaults.

Layers, later wins: packaged ``default.toml`` < ``/etc/mma/mma.toml`` <
``$MMA_CONFIG`` < ``MMA_<SECTION>__<KEY>`` environment variables; ``--config FILE``
takes the place of both files (defaults < FILE < environment) unless the system file
is asked for too (``system=True``). Every key a layer sets must exist in the defaults
with the same type (an int is accepted where a float is expected), and its value must
pass :mod:`mma.config_values` (choices, ranges); :class:`mma.errors.ConfigError` lists
every problem of every layer at once, one line each naming the file and the key.
The Kafka client tables (``[kafka.alert_client]``...) are free-form: any librdkafka
property with a scalar value, checked by :func:`mma.kafka_conf.check_properties`.
Secrets are never read from files, only from the environment or systemd credentials,
and are redacted by :meth:`Config.render`.

``[windows]`` (time windows per event class, and the old messenger keys) is checked
and expanded by :mod:`mma.windows` before a layer is merged.
"""

from __future__ import annotations

import copy
import logging
import os
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mma.config_files import config_files, read_layer
from mma.config_values import value_problems
from mma.errors import ConfigError
from mma.kafka_conf import RESERVED, SECRET_PROPERTIES, check_properties, password_hint
from mma.models import EVENT_CLASSES
from mma.windows import (
    LEGACY_WINDOW_KEYS,
    WINDOW_ENV_KEYS,
    check_default_windows,
    check_windows_layer,
)

log = logging.getLogger(__name__)

SYSTEM_CONFIG = Path("/etc/mma/mma.toml")
ENV_PREFIX = "MMA_"
# Lists of tables, each table validated against a template table of the defaults plus
# required string keys: dotted key -> (template table, required keys).
_TABLE_LISTS = {"channels.email.subscribers": ("channels.email.rules", ("address",)),
                "channels.slack.destinations": ("channels.slack.rules",
                                                ("name", "webhook_secret"))}
# Key names that must never be given a value in a file: a clearer error than "unknown key".
_SECRET_WORDS = ("password", "secret", "webhook", "token")
# Free-form tables of librdkafka properties (see mma.kafka_conf): any property name,
# dotted names quoted or not (``security.protocol`` and ``"security.protocol"`` are the
# same key), string/number/boolean values; secrets and keys mma sets itself are refused.
_FREE_TABLES = frozenset(RESERVED)


def _load_defaults() -> dict[str, Any]:
    text = resources.files("mma").joinpath("default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, list):
        return isinstance(value, list) and all(
            _type_ok(default[0], v) for v in value
        ) if default else isinstance(value, list)
    return isinstance(value, type(default))


def _merge(
    base: MutableMapping[str, Any],
    layer: Mapping[str, Any],
    defaults: Mapping[str, Any],
    origin: str,
    prefix: str = "",
    errors: list[str] | None = None,
) -> None:
    """Merge *layer* into *base* in place, checking keys and types against *defaults*.

    Each bad key is appended to *errors* (one line naming *origin* and the key) and
    left out, so that one pass reports every mistake of a file; without *errors*
    the first one raises :class:`ConfigError`.
    """
    collect: list[str] = [] if errors is None else errors
    for key, value in layer.items():
        try:
            _merge_key(base, key, value, defaults, origin, prefix, collect)
        except ConfigError as exc:
            collect.append(str(exc))
    if errors is None and collect:
        raise ConfigError("\n".join(collect))


def _merge_key(base: MutableMapping[str, Any], key: str, value: Any,
               defaults: Mapping[str, Any], origin: str, prefix: str,
               errors: list[str]) -> None:
    """Merge one key of a layer (see :func:`_merge`); raise ConfigError if it is bad."""
    dotted = f"{prefix}{key}"
    if key not in defaults:
        secret = _secret_key(dotted, value)
        if secret:
            raise ConfigError(
                f"{origin}: key '{secret}' looks like a secret; secrets are read only "
                "from the environment or systemd credentials (see [secrets])"
            )
        raise ConfigError(f"{origin}: unknown key '{dotted}'")
    default = defaults[key]
    if dotted in _TABLE_LISTS:
        base[key] = _table_list(value, dotted, origin, _TABLE_LISTS[dotted], errors)
    elif dotted in _FREE_TABLES:
        base[key] = {**base[key], **_free_table(value, dotted, origin)}
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: '{dotted}' must be a table")
        _merge(base[key], value, default, origin, dotted + ".", errors)
    elif not _type_ok(default, value):
        raise ConfigError(
            f"{origin}: '{dotted}' must be of type {type(default).__name__}, "
            f"got {type(value).__name__} {value!r}"
        )
    else:
        base[key] = float(value) if isinstance(default, float) else value


def _table_list(value: Any, dotted: str, origin: str, spec: tuple[str, tuple[str, ...]],
                errors: list[str] | None = None) -> list[dict[str, Any]]:
    """Validate a list of tables against its template (see ``_TABLE_LISTS``)."""
    template_name, required = spec
    node: Any = _load_defaults()
    for part in template_name.split("."):
        node = node[part]
    template = {**node, **{k: "" for k in required}}
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{origin}: '{dotted}' must be a list of tables")
    out = []
    for i, table in enumerate(value):
        for key in required:
            if not isinstance(table.get(key), str) or not table[key]:
                raise ConfigError(f"{origin}: '{dotted}[{i}].{key}' is required")
        checked: dict[str, Any] = {}
        _merge(checked, table, template, origin, f"{dotted}[{i}].", errors)
        out.append(checked)
    return out


def _free_table(value: Any, dotted: str, origin: str) -> dict[str, Any]:
    """Validate a free-form table (see ``_FREE_TABLES``), flattened to dotted property names."""
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: '{dotted}' must be a table")
    flat: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for key, inner in table.items():
            name = f"{prefix}{key}"
            if isinstance(inner, dict):
                walk(inner, name + ".")
                continue
            if _secret_key(name, inner) or name in SECRET_PROPERTIES:
                raise ConfigError(
                    f"{origin}: key '{dotted}.{name}' looks like a secret; secrets are read "
                    f"only from the environment or systemd credentials (see [secrets]"
                    f"{password_hint(dotted)})")
            flat[name] = inner

    walk(value, "")
    check_properties(dotted, flat, origin)  # keys mma sets itself, value types
    return flat


def _secret_key(dotted: str, value: Any) -> str | None:
    """The dotted name of a secret-looking key at or below *dotted*, if any."""
    if any(word in dotted.rsplit(".", 1)[-1].lower() for word in _SECRET_WORDS):
        return dotted
    if isinstance(value, dict):
        for key, inner in value.items():
            found = _secret_key(f"{dotted}.{key}", inner)
            if found:
                return found
    return None


def _env_layer(environ: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``MMA_SECTION__KEY=value`` variables into a nested table.

    Values are parsed as TOML literals when they parse (numbers, booleans,
    arrays) and taken as strings otherwise.
    """
    layer: dict[str, Any] = {}
    secret_vars = set(defaults.get("secrets", {}).values())
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name in secret_vars:
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if ".".join(path[:-1]) in _FREE_TABLES:
            # librdkafka property names have dots, never underscores: SECURITY_PROTOCOL
            # stands for security.protocol.
            path[-1] = path[-1].replace("_", ".")
        elif len(path) == 2 and path[0] == "windows":
            # MMA_WINDOWS__NEUTRINO_SN_BURST stands for "neutrino.sn_burst".
            path[-1] = WINDOW_ENV_KEYS.get(path[-1], path[-1])
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return layer


@dataclass(frozen=True)
class Config:
    """Validated configuration: a nested mapping plus where it came from."""

    data: Mapping[str, Any]
    sources: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    def section(self, name: str) -> Mapping[str, Any]:
        """Return one section (dotted for nested ones, e.g. ``vetting.ztf``)."""
        node: Any = self.data
        for part in name.split("."):
            node = node[part]
        return dict(node)

    @property
    def state_dir(self) -> Path:
        """Directory for the SQLite database and other state."""
        configured = self.data["paths"]["state_dir"]
        if configured:
            return Path(configured).expanduser()
        if self.environ.get("STATE_DIRECTORY"):  # systemd StateDirectory=
            return Path(self.environ["STATE_DIRECTORY"].split(":")[0])
        base = self.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "mma"

    @property
    def cache_dir(self) -> Path:
        """Directory for downloaded skymaps and other caches."""
        configured = self.data["paths"]["cache_dir"]
        if configured:
            return Path(configured).expanduser()
        if self.environ.get("CACHE_DIRECTORY"):  # systemd CacheDirectory=
            return Path(self.environ["CACHE_DIRECTORY"].split(":")[0])
        base = self.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "mma"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL; SQLite in the state directory unless configured."""
        url = str(self.data["database"]["url"])
        return url or f"sqlite:///{self.state_dir / 'mma.sqlite'}"

    def window_days(self, event_class: str) -> tuple[float, float]:
        """Time window ``(start, end)`` in days relative to t0 for *event_class*.

        Raises
        ------
        ConfigError
            *event_class* is not one of :data:`mma.models.EVENT_CLASSES` (a messenger
            name such as ``gw`` or ``neutrino`` is not a class).
        """
        windows = self.data["windows"]
        if event_class not in EVENT_CLASSES or event_class not in windows:
            hint = ""
            if event_class in LEGACY_WINDOW_KEYS:
                hint = (f"; '{event_class}' is a messenger, whose classes are "
                        f"{', '.join(LEGACY_WINDOW_KEYS[event_class])}")
            raise ConfigError(f"no time window for event class {event_class!r} (the classes "
                              f"are {', '.join(EVENT_CLASSES)}){hint}")
        start, end = windows[event_class]
        return float(start), float(end)

    def secret(self, name: str) -> str | None:
        """Read a secret from its environment variable or systemd credential file."""
        var = self.data["secrets"][name]
        if self.environ.get(var):
            return self.environ[var]
        cred_dir = self.environ.get("CREDENTIALS_DIRECTORY")
        if cred_dir:
            path = Path(cred_dir) / name
            if path.is_file():
                return path.read_text(encoding="utf-8").strip()
        return None

    def named_secret(self, variable: str) -> str | None:
        """Read a secret named by a setting (``webhook_secret`` of a Slack destination):
        the environment variable *variable*, else the systemd credential file of that
        name in ``$CREDENTIALS_DIRECTORY``; None when neither is set."""
        if self.environ.get(variable):
            return self.environ[variable]
        cred_dir = self.environ.get("CREDENTIALS_DIRECTORY")
        path = Path(cred_dir) / variable if cred_dir and "/" not in variable else None
        if path is not None and path.is_file():
            return path.read_text(encoding="utf-8").strip()
        return None

    def render(self) -> str:
        """The effective configuration as TOML that loads back (see :mod:`mma.config_render`).

        Secrets are shown only as set/unset, and a password in ``database.url`` is left out.
        """
        from mma.config_render import render

        return render(self.data, self.sources, lambda key: bool(self.secret(key)))


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    system_file: Path | None = None,
    system: bool | None = None,
) -> Config:
    """Load and validate the configuration.

    Parameters
    ----------
    path
        A user file (``--config``); defaults to ``$MMA_CONFIG`` if set.
    environ
        Environment to read ``MMA_*`` overrides and secrets from (default ``os.environ``).
    system_file
        The system-wide file (default :data:`SYSTEM_CONFIG`), read if it exists.
    system
        Whether to read *system_file*. Default: only when *path* is not given, so that
        ``--config FILE`` means defaults < FILE < environment, while ``$MMA_CONFIG``
        (the systemd units) keeps the system file as a base (``--system-config``
        asks for it with ``--config``).

    Raises
    ------
    ConfigError
        Every problem found, one per line naming the file (or the environment) and
        the key: a missing or unreadable file, invalid TOML, an unknown key, a wrong
        type, a value out of range or not among the choices (:mod:`mma.config_values`).
    """
    env = dict(os.environ if environ is None else environ)
    defaults = _load_defaults()
    check_default_windows(defaults)
    data, sources, errors = copy.deepcopy(defaults), ["defaults"], list[str]()
    layers: list[tuple[str, Mapping[str, Any]]] = []
    for file in config_files(path, env, system_file or SYSTEM_CONFIG, system, errors):
        layer = read_layer(file, errors)
        if layer is not None:
            _merge_layer(data, layer, defaults, str(file), errors)
            layers.append((str(file), layer))
            sources.append(str(file))
    env_layer = _env_layer(env, defaults)
    if env_layer:
        origin = "environment (MMA_*)"
        _merge_layer(data, env_layer, defaults, origin, errors)
        layers.append((origin, env_layer))
        sources.append("environment")
    errors.extend(value_problems(data, layers))
    if errors:
        raise ConfigError("\n".join(errors))
    log.debug("configuration loaded from %s", ", ".join(sources))
    return Config(data=data, sources=tuple(sources), environ=env)


def _merge_layer(data: MutableMapping[str, Any], layer: Mapping[str, Any],
                 defaults: Mapping[str, Any], origin: str, errors: list[str]) -> None:
    """Check *layer*'s windows and merge it into *data*, collecting its errors."""
    if "secrets" in layer:
        if layer["secrets"] != defaults["secrets"]:  # a copy of default.toml may repeat them
            errors.append(f"{origin}: [secrets] names environment variables and is fixed")
        layer = {k: v for k, v in layer.items() if k != "secrets"}
    try:
        layer = check_windows_layer(layer, origin)
    except ConfigError as exc:
        errors.append(str(exc))
        layer = {k: v for k, v in layer.items() if k != "windows"}
    _merge(data, layer, defaults, origin, errors=errors)


# Settings a running daemon cannot change: SIGHUP warns and keeps the running ones.
RESTART_KEYS = (
    "database.url", "paths.state_dir", "paths.cache_dir", "kafka.gcn_bootstrap_servers",
    "kafka.alert_bootstrap_servers", "kafka.gcn_domain", "kafka.group_id", "kafka.instance",
    "kafka.alert_client", "kafka.notice_client", "daemon.health_port", "daemon.spool_dir",
)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The :data:`RESTART_KEYS` whose values differ between *old* and *new*."""
    def get(config: Config, dotted: str) -> Any:
        section, _, key = dotted.rpartition(".")
        return config.section(section).get(key)

    return [key for key in RESTART_KEYS if get(old, key) != get(new, key)]
