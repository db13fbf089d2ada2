"""Handlers: one module per notice or alert family, imported as ``mma.handlers``.

The contract (checked by :mod:`mma.registry` at start-up and by a test):

``NAME: str``
    Unique short name of the family (``"lvk"``, ``"ztf"``...).
``KIND: str``
    ``"notice"`` or ``"alert"``.
``DEFAULT_TOPICS: tuple[str, ...]``
    Kafka topics the module claims unless the configuration remaps them.
``parse(raw: bytes, *, topic: str) -> Notice | Alert``
    Turns one message into a domain object. Raises only
    :class:`mma.errors.BadMessage` subclasses; never touches SQL or the network.
``FIRST_LIGHT: datetime`` (optional, default 1990-01-01 UTC)
    When the instrument or stream began (timezone-aware UTC, with its source in
    a comment). :mod:`mma.epochs` refuses a record dated earlier, or later than
    the wall clock plus a day, right after ``parse``.
``sniff(raw: bytes) -> bool`` (optional)
    Cheap test of whether a file's content is this family's, for ``mma replay``.
``FALLBACK: bool`` (optional, default False)
    A catch-all (e.g. "a VOEvent no other handler claims"): ``sniff`` is tried
    after every other handler's. Such handlers usually raise
    :class:`mma.errors.Ignored` for messages of no interest.
``split(raw: bytes) -> Iterator[bytes]`` (optional)
    Cuts a file holding many records (Avro container, parquet) into the payloads
    that ``parse`` takes, one per record, yielded lazily so that memory does not
    grow with the file; caps on records per file are the handler's, checked as
    early as the format allows. Without it a file is one message.

Identifiers (object, alert and event ids) are checked with
:mod:`mma.formats.ids` before they are stored or logged.

Adding a family is one module here plus ``tests/handlers/test_<name>.py``.
"""
