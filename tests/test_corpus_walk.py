"""Every notice file of the corpus MANIFEST is parsed to a Notice or skipped with a reason."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mma.errors import BadMessage, Ignored
from mma.models import Notice
from mma.registry import Registry

NOTICE_FOLDERS = ("gcn-json/", "voevent/")


def _notice_files(corpus: Path) -> list[str]:
    manifest = json.loads((corpus / "MANIFEST.json").read_text())
    return sorted(row["dest"] for row in manifest
                  if row["dest"].startswith(NOTICE_FOLDERS)
                  and row["format"] in ("JSON", "VOEvent XML"))


def test_manifest_lists_the_notice_folders(corpus: Path) -> None:
    files = _notice_files(corpus)
    assert len(files) > 150  # 102 JSON + 83 VOEvent files, minus alert JSON
    on_disk = {str(p.relative_to(corpus)) for folder in NOTICE_FOLDERS
               for p in (corpus / folder).rglob("*") if p.is_file()}
    assert on_disk == set(files)  # the walk below misses nothing


def test_every_notice_is_parsed_or_skipped_with_a_reason(corpus: Path) -> None:
    registry = Registry()
    outcome: Counter[str] = Counter()
    failures = []
    for name in _notice_files(corpus):
        raw = (corpus / name).read_bytes()
        try:
            handler = registry.detect(raw)
            item = handler.parse(raw, topic="")
        except Ignored as exc:
            assert str(exc), f"{name}: skipped without a reason"
            outcome["ignored"] += 1
            continue
        except BadMessage as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        assert isinstance(item, Notice), name
        outcome[handler.NAME] += 1
    assert failures == []
    # Every LVK alert of the corpus goes through the LVK handler.
    assert outcome["lvk"] >= 32


@pytest.mark.parametrize("name", ["chime/frb.detection.example.json"])
def test_gcn_types_without_handler_are_ignored_not_dead_lettered(corpus: Path,
                                                                name: str) -> None:
    raw = (corpus / "gcn-json/gcn-schema" / name).read_bytes()
    handler = Registry().detect(raw)
    assert handler.NAME == "gcn_other"
    with pytest.raises(Ignored, match="no mma handler"):
        handler.parse(raw, topic="gcn.notices.chime.frb")


def test_the_schema_circular_goes_to_the_circulars_handler(corpus: Path) -> None:
    """GCN Circulars are read (names, aliases, retractions): attach-only notices."""
    raw = (corpus / "gcn-json/gcn-schema/circulars.example.json").read_bytes()
    handler = Registry().detect(raw)
    assert handler.NAME == "circulars"
    notice = handler.parse(raw, topic="gcn.circulars")
    assert isinstance(notice, Notice) and "attach_only" in notice.flags
