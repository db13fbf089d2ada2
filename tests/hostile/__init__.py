"""Generators of hostile and broken inputs, one module per area.

Each module exposes ``cases() -> list[Case]``: files built in memory (nothing
binary is committed), each with the behaviour a replay must show. The unit
tests of each area use them one by one; ``tests/test_hostile_replay.py`` replays
them all together under a memory ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One hostile file.

    Attributes
    ----------
    name : str
        Short identifier, used as the file name stem and the test id.
    filename : str
        File name with the extension a user would give it (``.json``, ``.avro``...).
    data : bytes
        The file's content.
    outcome : str
        What a replay must do with it: ``dead_letter`` (the file or one of its
        records is dead-lettered), ``stored`` (accepted as valid) or ``ignored``.
    reason : str
        A fragment the dead letter's reason must contain (case-insensitive);
        empty when *outcome* is not ``dead_letter``.
    """

    name: str
    filename: str
    data: bytes
    outcome: str = "dead_letter"
    reason: str = ""
