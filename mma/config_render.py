"""The effective configuration as a TOML file that loads back (``mma config show``).

:func:`render` writes every section and key of a merged configuration, so that
``mma config show > file.toml`` followed by ``mma --config file.toml`` gives the same
configuration, except for what is never written to a file:

* ``[secrets]`` is fixed (it names environment variables), so it is shown as comments
  saying whether each secret is set, never its value;
* a password inside ``database.url`` is left out of the URL (a comment says so).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["redact_url", "render", "toml_key", "toml_value"]


def toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (``"security.protocol"``)."""
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return toml_string(key)


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL, which TOML refuses raw."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    """*value* (string, bool, number, list, table) as a TOML value on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {inner} }}" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def redact_url(url: str) -> tuple[str, bool]:
    """*url* without a password embedded in it, and whether there was one."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}@{host}", True
    return url, False


def render(data: Mapping[str, Any], sources: tuple[str, ...],
           secret_set: Callable[[str], bool]) -> str:
    """The configuration *data* as TOML that :func:`mma.config.load_config` accepts.

    Parameters
    ----------
    data
        The merged configuration.
    sources
        Where it came from (a comment on the first line).
    secret_set
        Whether the secret of a ``[secrets]`` key is set.
    """
    lines = [f"# sources: {', '.join(sources) or 'defaults'}"]

    def emit(prefix: str, table: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        if prefix == "secrets":
            lines.append("\n# [secrets]: fixed names of environment variables or systemd "
                         "credentials; values never shown")
            for key, value in scalars.items():
                state = "set" if secret_set(key) else "unset"
                lines.append(f"# {key} = {toml_value(value)}  # {state}, value redacted")
            return
        if scalars:
            lines.append(f"\n[{prefix}]")
            for key, value in scalars.items():
                shown = toml_value(value)
                if prefix == "database" and key == "url":
                    url, redacted = redact_url(str(value))
                    shown = toml_value(url) + ("  # password left out" if redacted else "")
                lines.append(f"{toml_key(key)} = {shown}")
        for key, value in table.items():
            if isinstance(value, Mapping):
                emit(f"{prefix}.{toml_key(key)}" if prefix else toml_key(key), value)

    emit("", data)
    return "\n".join(lines) + "\n"
