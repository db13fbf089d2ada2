"""Safe bytes → Python decoding for the formats mma receives.

Every function takes the raw message, checks a size cap before doing any work,
and fails only with :class:`mma.errors.BadMessage` subclasses whose messages say
what is wrong, so the ingest loop can dead-letter the message and go on.

- :mod:`mma.formats.gcn_json`: strict JSON (no NaN, no duplicate keys, UTF-8 only)
  and base64 whose decoded size is capped before decoding (inline sky maps).
- :mod:`mma.formats.avro`: Avro object containers (ZTF, broker files) read with
  their block structure checked first, split into one-record containers, and
  schemaless records (Rubin, after the Confluent header).
"""
