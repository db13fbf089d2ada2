"""Small helpers shared by several test modules."""

from __future__ import annotations

from typing import Any


class PreParsedHandler:
    """A handler for items the test passes to ``Pipeline.process`` already parsed."""

    NAME = "test"
    KIND = "notice"

    def parse(self, raw: bytes, *, topic: str) -> Any:
        raise AssertionError("items are passed pre-parsed")


HANDLER = PreParsedHandler()
