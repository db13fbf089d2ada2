"""The one exception hierarchy of mma.

Everything that can go wrong with a *message* (a notice or an alert) is a
:class:`BadMessage`: the message is dead-lettered with its raw bytes and the
stream goes on. Everything that can go wrong with the *environment* (a
database that is down, a broker that is unreachable) is a
:class:`TransientError`: the message is retried, never dead-lettered.
Configuration mistakes are :class:`ConfigError` and stop the program at
start-up with a message naming the file and the key.
"""

from __future__ import annotations


class MmaError(Exception):
    """Base class of every exception mma raises on purpose."""


class ConfigError(MmaError):
    """The configuration is invalid (unknown key, wrong type, secret in a file)."""


class BadMessage(MmaError):
    """A message cannot be used; it goes to the dead-letter table.

    Handlers raise only subclasses of this class.
    """


class MalformedMessage(BadMessage):
    """The bytes are not valid in their format (XML, JSON, Avro, FITS, parquet)."""


class HostileMessage(BadMessage):
    """The payload is oversized or crafted (entity expansion, XXE, huge base64)."""


class MissingField(BadMessage):
    """A field that the handler needs is absent or null."""


class InvalidValue(BadMessage):
    """A field is present but its value is not usable (NaN, out of range, bad time)."""


class UnknownFormat(BadMessage):
    """No handler recognises the content of a file or message."""


class BadSkymap(BadMessage):
    """A skymap cannot be decoded or fails validation (not normalised, negative...)."""


class Ignored(MmaError):
    """A valid message of no interest (e.g. a MOA microlensing VOEvent).

    Counted and logged at debug level; neither stored nor dead-lettered.
    """


class DeliveryError(MmaError):
    """A channel did not take a message.

    Parameters
    ----------
    retry_after : float, optional
        Seconds to wait before the next attempt (e.g. Slack's Retry-After).
    permanent : bool
        Retrying cannot help (bad webhook URL, refused recipient): park it.
    """

    def __init__(self, message: str, *, retry_after: float | None = None,
                 permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent


class TransientError(MmaError):
    """A failure of the environment; the same message may succeed later."""
