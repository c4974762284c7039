"""siamese.serving.storage without Gradio: a store that stays under its cap but spares what a client may still fetch,
the disk limits from the environment, and the sweep of empty upload folders and orphaned zip extractions."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from siamese.data.uploads import ZIP_FOLDER_PREFIX
from siamese.serving.storage import (
    DiskLimits,
    DiskSweeper,
    FileStore,
    disk_bytes,
    remove_empty_entries,
)

FILE_BYTES = 10_000


def make_old(path: Path, seconds: float) -> None:
    """Set the file's last use `seconds` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def content(index: int) -> bytes:
    return index.to_bytes(4, "big") * (FILE_BYTES // 4)


def test_the_store_stays_under_its_cap_by_dropping_the_least_recently_used_first(tmp_path):
    store = FileStore(tmp_path / "store", cap_bytes=100_000, grace_seconds=60)
    paths = []
    for index in range(40):
        paths.append(store.keep_bytes(content(index)))
        make_old(paths[-1], 10_000 - index)  # each file used a second after the one before
    present = [path.exists() for path in paths]
    assert store.total_bytes() <= store.cap_bytes
    kept = present.index(True)
    assert kept > 0 and all(present[kept:])  # the least recently used went, and only they
    assert sum(disk_bytes(path.stat()) for path in paths[kept:]) == store.total_bytes()


def test_a_file_handed_out_again_counts_as_used_now_and_outlives_older_ones(tmp_path):
    store = FileStore(tmp_path / "store", cap_bytes=100_000, grace_seconds=0)
    first, second = store.keep_bytes(content(0)), store.keep_bytes(content(1))
    make_old(first, 20_000)
    make_old(second, 10_000)
    inode = first.stat().st_ino
    assert store.keep_bytes(content(0)) == first  # handed out again: marked as used, not rewritten
    assert first.stat().st_ino == inode and time.time() - first.stat().st_mtime < 60
    for index in range(2, 40):
        make_old(store.keep_bytes(content(index)), 5_000)
    assert first.exists() and not second.exists()
    assert store.total_bytes() <= store.cap_bytes


def test_files_used_within_the_grace_period_are_never_removed_even_over_the_cap(tmp_path):
    store = FileStore(tmp_path / "store", cap_bytes=20_000, grace_seconds=600)
    paths = [store.keep_bytes(content(index)) for index in range(10)]
    assert all(path.exists() for path in paths) and store.total_bytes() > store.cap_bytes
    for index, path in enumerate(paths[:7]):
        make_old(path, 700 + index)  # past the grace period; the last three were used just now
    removed = store.evict()
    assert sorted(removed) == sorted(paths[:7])  # down to 80% of the cap is out of reach: all it may remove
    assert all(path.exists() for path in paths[7:])


def test_a_removed_file_is_written_again_and_no_partial_file_is_left(tmp_path):
    store = FileStore(tmp_path / "store", cap_bytes=10**9, grace_seconds=0)
    path = store.keep_bytes(b"preview")
    path.unlink()
    assert store.keep_bytes(b"preview") == path and path.read_bytes() == b"preview"
    named = store.keep("abc/picture.png", lambda file: file.write(b"png"))
    assert named == tmp_path / "store" / "abc" / "picture.png" and named.read_bytes() == b"png"

    def failing(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.keep("abc/broken.png", failing)
    assert sorted(path.name for path in (tmp_path / "store").rglob("*")) == sorted([path.name, "abc", "picture.png"])


def test_a_subfolder_emptied_by_eviction_is_removed(tmp_path):
    store = FileStore(tmp_path / "store", cap_bytes=0, grace_seconds=60)
    named = store.keep("abc/picture.png", lambda file: file.write(b"png"))
    make_old(named, 120)
    assert store.evict() == [named]
    assert list((tmp_path / "store").iterdir()) == []


def test_disk_limits_come_from_the_environment_with_defaults():
    limits = DiskLimits.from_environment({})
    assert (limits.preview_cap_mb, limits.preview_grace, limits.cache_max_age) == (50.0, 600.0, 3600)
    assert limits.cache_schedule == (900, 3600) and limits.preview_cap_bytes == 50 * 2**20
    environment = {"SIAMESE_PREVIEW_CAP_MB": "20", "SIAMESE_PREVIEW_GRACE": "30", "SIAMESE_CACHE_MAX_AGE": "60"}
    limits = DiskLimits.from_environment(environment)
    assert (limits.preview_cap_bytes, limits.preview_grace, limits.cache_schedule) == (20 * 2**20, 30.0, (15, 60))
    with pytest.raises(ValueError, match="SIAMESE_CACHE_MAX_AGE must be a number, got 'soon'"):
        DiskLimits.from_environment({"SIAMESE_CACHE_MAX_AGE": "soon"})
    with pytest.raises(ValueError, match="SIAMESE_CACHE_MAX_AGE must be at least 1, got '0'"):
        DiskLimits.from_environment({"SIAMESE_CACHE_MAX_AGE": "0"})
    with pytest.raises(ValueError, match="SIAMESE_PREVIEW_CAP_MB must be at least 0"):
        DiskLimits.from_environment({"SIAMESE_PREVIEW_CAP_MB": "-1"})


def test_only_empty_folders_and_files_unchanged_for_the_given_time_are_removed(tmp_path):
    for name in ("old_empty", "new_empty", "old_full"):
        (tmp_path / name).mkdir()
    (tmp_path / "old_full" / "upload.png").write_bytes(b"png")
    for name, data in (("tmp_old_empty", b""), ("tmp_new_empty", b""), ("old.png", b"png")):
        (tmp_path / name).write_bytes(data)
    for name in ("old_empty", "old_full", "tmp_old_empty", "old.png"):
        make_old(tmp_path / name, 120)
    assert remove_empty_entries(tmp_path, older_than=60) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new_empty", "old.png", "old_full", "tmp_new_empty"]


def test_a_sweep_evicts_stores_and_removes_empty_upload_folders_and_orphaned_extractions(tmp_path):
    store = FileStore(tmp_path / "store", cap_bytes=0, grace_seconds=60)
    preview = store.keep_bytes(b"old preview")
    make_old(preview, 120)
    uploads, temp = tmp_path / "gradio", tmp_path / "temp"
    (uploads / "0a1b").mkdir(parents=True)
    (uploads / "tmp0a1b").write_bytes(b"")  # what gr.File leaves at every call
    make_old(uploads / "0a1b", 120)
    make_old(uploads / "tmp0a1b", 120)
    for name, age in (("orphan", 7200), ("in_use", 10)):
        (temp / f"{ZIP_FOLDER_PREFIX}{name}" / "label").mkdir(parents=True)
        make_old(temp / f"{ZIP_FOLDER_PREFIX}{name}", age)
    sweeper = DiskSweeper(DiskLimits(cache_max_age=60), [store], uploads, temp)
    sweeper.sweep_once()
    assert not preview.exists() and list(uploads.iterdir()) == []
    assert [path.name for path in temp.iterdir()] == [f"{ZIP_FOLDER_PREFIX}in_use"]


def test_the_sweeper_runs_in_the_background_until_stopped(tmp_path):
    (tmp_path / "0a1b").mkdir()
    make_old(tmp_path / "0a1b", 120)
    sweeper = DiskSweeper(DiskLimits(cache_max_age=4), [], tmp_path, tmp_path)  # a sweep every second
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while (tmp_path / "0a1b").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (tmp_path / "0a1b").exists()
    finally:
        sweeper.stop()
    assert sweeper._thread is None
