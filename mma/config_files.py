"""Which configuration files are read, and reading them without a traceback.

:func:`config_files` decides the files of :func:`mma.config.load_config` (the
system file, then ``--config`` or ``$MMA_CONFIG``); :func:`read_layer` parses one.
Both report a problem as a line in *errors* instead of raising, so that the loader
lists every problem at once: a missing file, an unreadable one (with the fix of the
documented install, docs/service.md), invalid TOML.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["config_files", "read_layer"]


def config_files(path: str | os.PathLike[str] | None, env: Mapping[str, str],
                  system_file: Path, system: bool | None, errors: list[str]) -> list[Path]:
    """The files to read, in order (see :func:`mma.config.load_config`); problems as *errors*."""
    files: list[Path] = []
    if (path is None if system is None else system) and _exists(system_file, errors):
        files.append(system_file)
    user = path or env.get("MMA_CONFIG")
    if user:
        user_path = Path(user)
        if not _exists(user_path, errors):
            if not errors or str(user_path) not in errors[-1]:
                errors.append(f"{user_path}: configuration file not found")
        elif user_path not in files:  # the unit's MMA_CONFIG may be the system file
            files.append(user_path)
    return files


def _exists(file: Path, errors: list[str]) -> bool:
    """Whether *file* exists; a directory this user cannot search is an error."""
    try:
        return file.is_file()
    except PermissionError:
        errors.append(f"{file}: cannot read the configuration: {file.parent} is not "
                      f"searchable by this user ({_who()}); {_PERMISSION_FIX}")
        return False


def read_layer(file: Path, errors: list[str]) -> dict[str, Any] | None:
    """One file's TOML, or None with the reason in *errors* (unreadable, invalid TOML)."""
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except PermissionError:
        errors.append(f"{file}: cannot read the configuration file: permission denied for "
                      f"this user ({_who()}); {_PERMISSION_FIX}")
    except OSError as exc:
        errors.append(f"{file}: cannot read the configuration file: {exc.strerror or exc}")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        errors.append(f"{file}: invalid TOML: {exc}")
    return None


# What the documented install does (docs/service.md): the service user reads its
# configuration through its group.
_PERMISSION_FIX = ("the service user must be able to read it: chgrp mma /etc/mma "
                   "&& chmod 0750 /etc/mma && chgrp mma FILE && chmod 0640 FILE "
                   "(docs/service.md), or run mma as a member of that group")


def _who() -> str:
    """The user name of this process, for messages."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.getuid()}"
