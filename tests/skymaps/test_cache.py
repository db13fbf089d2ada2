"""mma.skymaps.cache.SkymapCache: content addressing, damage, pruning, two writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

from mma.skymaps.cache import SkymapCache


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_get_and_content_addressing(tmp_path):
    cache = SkymapCache(tmp_path)
    data = b"SIMPLE  = T" + os.urandom(1000)
    sha = cache.put("https://gracedb.ligo.org/a.fits", data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert cache.put("https://gracedb.ligo.org/b.fits", data) == sha
    assert cache.get("https://gracedb.ligo.org/a.fits") == data
    assert cache.get("https://gracedb.ligo.org/b.fits") == data
    assert cache.get("https://gracedb.ligo.org/c.fits") is None
    assert len(files(tmp_path / "objects")) == 1  # stored once
    assert len(files(tmp_path / "index")) == 2
    assert not [p for p in files(tmp_path) if p.name.startswith(".tmp-")]


def test_a_url_can_change_content(tmp_path):
    cache = SkymapCache(tmp_path)
    cache.put("u", b"one")
    cache.put("u", b"two")
    assert cache.get("u") == b"two"


def test_damaged_object_or_index_is_a_miss(tmp_path):
    cache = SkymapCache(tmp_path)
    sha = cache.put("u", b"payload")
    (tmp_path / "objects" / sha[:2] / sha).write_bytes(b"tampered")
    assert cache.get("u") is None
    cache.put("v", b"other")
    index = next(p for p in files(tmp_path / "index")
                 if json.loads(p.read_bytes())["url"] == "v")
    index.write_bytes(b"{not json")
    assert cache.get("v") is None


def test_max_age_on_get(tmp_path):
    cache = SkymapCache(tmp_path)
    cache.put("u", b"x")
    assert cache.get("u", max_age_s=60) == b"x"
    assert cache.get("u", max_age_s=-1) is None


def test_prune_by_age_keeps_what_is_asked(tmp_path):
    cache = SkymapCache(tmp_path)
    sha_old = cache.put("old", b"old bytes")
    sha_kept = cache.put("kept", b"kept bytes")
    cache.put("kept-by-sha", b"sha kept bytes")
    keep_sha = hashlib.sha256(b"sha kept bytes").hexdigest()
    time.sleep(0.05)
    cache.put("new", b"new bytes")
    removed = cache.prune(keep={"kept", keep_sha}, max_age_s=0.03, grace_s=0)
    assert removed == 2  # the index entry and the object of "old"
    assert cache.get("old") is None
    assert not (tmp_path / "objects" / sha_old[:2] / sha_old).exists()
    assert cache.get("kept") == b"kept bytes"
    assert (tmp_path / "objects" / sha_kept[:2] / sha_kept).exists()
    assert cache.get("kept-by-sha") == b"sha kept bytes"
    assert cache.get("new") == b"new bytes"


def test_prune_spares_young_orphans(tmp_path):
    """An object whose index entry another process has not written yet survives."""
    cache = SkymapCache(tmp_path)
    sha = cache.put("u", b"data")
    next(p for p in files(tmp_path / "index")).unlink()  # now an orphan
    assert cache.prune(grace_s=60) == 0
    assert (tmp_path / "objects" / sha[:2] / sha).exists()
    assert cache.prune(grace_s=0) == 1


def _writer(directory: str, seed: int, rounds: int) -> None:
    cache = SkymapCache(directory)
    for i in range(rounds):
        cache.put("https://gracedb.ligo.org/shared.fits", bytes([seed]) * (50_000 + i))
        cache.put(f"https://gracedb.ligo.org/{seed}-{i}.fits", bytes([seed, i % 256]) * 100)
        assert cache.get("https://gracedb.ligo.org/shared.fits") is not None


def test_two_processes_write_concurrently(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), seed, 40)) for seed in (1, 2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    cache = SkymapCache(tmp_path)
    shared = cache.get("https://gracedb.ligo.org/shared.fits")
    assert shared is not None and len(set(shared)) == 1  # one writer's complete version
    assert all(cache.get(f"https://gracedb.ligo.org/{s}-{i}.fits") is not None
               for s in (1, 2) for i in range(40))
    assert not [p for p in files(tmp_path) if p.name.startswith(".tmp-")]
