"""Configuration: one TOML file validated against the packaged defaults.

Layers, later wins: packaged ``default.toml`` < ``/etc/mma/mma.toml`` <
``$MMA_CONFIG`` or ``--config`` < ``MMA_<SECTION>__<KEY>`` environment
variables. Every key a layer sets must exist in the defaults with the same
type (an int is accepted where a float is expected); otherwise
:class:`mma.errors.ConfigError` names the file and the key. The Kafka client tables
(``[kafka.alert_client]``...) are free-form: any librdkafka property with a scalar
value, checked by :func:`mma.kafka_conf.check_properties`. Secrets are never
read from files, only from the environment or systemd credentials, and are
redacted by :meth:`Config.render`.

``[windows]`` (time windows per event class, and the old messenger keys) is checked
and expanded by :mod:`mma.windows` before a layer is merged.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tomllib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

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
) -> None:
    """Merge *layer* into *base* in place, checking keys and types against *defaults*."""
    for key, value in layer.items():
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
            base[key] = _table_list(value, dotted, origin, _TABLE_LISTS[dotted])
        elif dotted in _FREE_TABLES:
            base[key] = {**base[key], **_free_table(value, dotted, origin)}
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: '{dotted}' must be a table")
            _merge(base[key], value, default, origin, dotted + ".")
        elif not _type_ok(default, value):
            raise ConfigError(
                f"{origin}: '{dotted}' must be of type {type(default).__name__}, "
                f"got {type(value).__name__} {value!r}"
            )
        else:
            base[key] = float(value) if isinstance(default, float) else value


def _table_list(value: Any, dotted: str, origin: str,
                spec: tuple[str, tuple[str, ...]]) -> list[dict[str, Any]]:
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
        _merge(checked, table, template, origin, f"{dotted}[{i}].")
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

    def render(self) -> str:
        """The effective configuration as TOML, secrets shown only as set/unset."""
        lines = [f"# sources: {', '.join(self.sources) or 'defaults'}"]

        def emit(prefix: str, table: Mapping[str, Any]) -> None:
            scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
            if scalars:
                lines.append(f"\n[{prefix}]")
                for key, value in scalars.items():
                    shown = value
                    if prefix == "secrets":
                        state = "set" if self.secret(key) else "unset"
                        lines.append(f"{key} = {json.dumps(value)}  # {state}, value redacted")
                        continue
                    if prefix == "database" and key == "url":
                        shown = _redact_url(str(value))
                    lines.append(f"{_toml_key(key)} = {json.dumps(shown)}")
            for key, value in table.items():
                if isinstance(value, dict):
                    emit(f"{prefix}.{key}" if prefix else key, value)

        emit("", self.data)
        return "\n".join(lines).replace("\n[]\n", "\n") + "\n"


def _toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (``"security.protocol"``)."""
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return json.dumps(key)


def _redact_url(url: str) -> str:
    """Hide a password embedded in a database URL."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    system_file: Path = SYSTEM_CONFIG,
) -> Config:
    """Load and validate the configuration.

    Parameters
    ----------
    path
        A user file (``--config``); defaults to ``$MMA_CONFIG`` if set.
    environ
        Environment to read ``MMA_*`` overrides and secrets from (default ``os.environ``).
    system_file
        The system-wide file, read if it exists.

    Raises
    ------
    ConfigError
        On a missing user file, invalid TOML, unknown key or wrong type.
    """
    env = dict(os.environ if environ is None else environ)
    defaults = _load_defaults()
    check_default_windows(defaults)
    data = copy.deepcopy(defaults)
    sources = ["defaults"]
    files: list[Path] = []
    if system_file.is_file():
        files.append(system_file)
    user = path or env.get("MMA_CONFIG")
    if user:
        user_path = Path(user)
        if not user_path.is_file():
            raise ConfigError(f"{user_path}: configuration file not found")
        files.append(user_path)
    for file in files:
        try:
            layer = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from exc
        if "secrets" in layer:
            raise ConfigError(f"{file}: [secrets] names environment variables and is fixed")
        _merge(data, check_windows_layer(layer, str(file)), defaults, str(file))
        sources.append(str(file))
    env_layer = _env_layer(env, defaults)
    if env_layer:
        origin = "environment (MMA_*)"
        _merge(data, check_windows_layer(env_layer, origin), defaults, origin)
        sources.append("environment")
    log.debug("configuration loaded from %s", ", ".join(sources))
    return Config(data=data, sources=tuple(sources), environ=env)


# Settings a running daemon cannot change: SIGHUP warns and keeps the running ones.
RESTART_KEYS = (
    "database.url", "paths.state_dir", "paths.cache_dir", "kafka.gcn_bootstrap_servers",
    "kafka.alert_bootstrap_servers", "kafka.group_id", "kafka.instance",
    "kafka.alert_client", "kafka.notice_client", "daemon.health_port", "daemon.spool_dir",
)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The :data:`RESTART_KEYS` whose values differ between *old* and *new*."""
    def get(config: Config, dotted: str) -> Any:
        section, _, key = dotted.rpartition(".")
        return config.section(section).get(key)

    return [key for key in RESTART_KEYS if get(old, key) != get(new, key)]
