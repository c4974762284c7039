"""What a server writes to disk, kept bounded for a server that runs for months.

- `FileStore`: a folder of files written once (under a temporary name, then renamed into place) and never rewritten
  in place, so a client downloading one never sees it truncated (h11's "Too little data for declared
  Content-Length"). Over its cap the least recently used files go first, but never one used within the grace
  period: a client may not have fetched it yet.
- `DiskLimits`: the cap, the grace period and the age after which uploads are removed, from environment variables.
- `DiskSweeper`: every so often, evicts the stores, removes the empty folders and files an upload cache leaves behind
  and the zip extractions of a process that was killed before it could remove them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from siamese.data.uploads import ZIP_FOLDER_PREFIX

PREVIEW_CAP_ENV = "SIAMESE_PREVIEW_CAP_MB"
PREVIEW_GRACE_ENV = "SIAMESE_PREVIEW_GRACE"
CACHE_MAX_AGE_ENV = "SIAMESE_CACHE_MAX_AGE"
DEFAULT_PREVIEW_CAP_MB = 50.0
DEFAULT_PREVIEW_GRACE = 600.0  # seconds
DEFAULT_CACHE_MAX_AGE = 3600  # seconds
SWEEPS_PER_AGE = 4
LOW_WATER = 0.8  # an eviction frees down to this share of the cap, so the next one waits for new files
# A zip extraction lives while its gallery is embedded; one this old was left by a process that was killed.
ORPHAN_MIN_AGE = 3600.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskLimits:
    """How much a server keeps: previews up to `preview_cap_mb` per store (none removed within `preview_grace`
    seconds of its last use), and uploads for `cache_max_age` seconds, checked every `sweep_every` seconds."""

    preview_cap_mb: float = DEFAULT_PREVIEW_CAP_MB
    preview_grace: float = DEFAULT_PREVIEW_GRACE
    cache_max_age: int = DEFAULT_CACHE_MAX_AGE

    @property
    def preview_cap_bytes(self) -> int:
        return int(self.preview_cap_mb * 2**20)

    @property
    def sweep_every(self) -> int:
        """A quarter of the upload age: an upload is removed between `cache_max_age` and 1.25 times that."""
        return max(1, self.cache_max_age // SWEEPS_PER_AGE)

    @property
    def cache_schedule(self) -> tuple[int, int]:
        """(every, age) in seconds: every `every` seconds, uploads older than `age` are removed."""
        return self.sweep_every, self.cache_max_age

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> DiskLimits:
        """The limits $SIAMESE_PREVIEW_CAP_MB, $SIAMESE_PREVIEW_GRACE and $SIAMESE_CACHE_MAX_AGE set, defaults for
        the others; a ValueError names a setting that is not a number in its range."""
        values = os.environ if environment is None else environment
        return cls(
            _setting(values, PREVIEW_CAP_ENV, DEFAULT_PREVIEW_CAP_MB, minimum=0.0),
            _setting(values, PREVIEW_GRACE_ENV, DEFAULT_PREVIEW_GRACE, minimum=0.0),
            int(_setting(values, CACHE_MAX_AGE_ENV, DEFAULT_CACHE_MAX_AGE, minimum=1.0)),
        )


def _setting(values: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    text = values.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ValueError(f"{name} must be at least {minimum:g}, got {text!r}")
    return value


class FileStore:
    """A folder of files written once, kept under `cap_bytes` by removing the least recently used first.

    A file's modification time is its last use: `keep` sets it when it hands a file out again. A file used within
    `grace_seconds` is never removed, so the folder passes its cap by at most what was written within that time.
    Removing a file another process reads is safe on Linux (its reader keeps the open file), but a client may be
    handed a path and fetch it later: that is what the grace period is for.
    """

    def __init__(self, folder: str | Path, cap_bytes: int, grace_seconds: float):
        self.folder = Path(folder)
        self.cap_bytes = int(cap_bytes)
        self.grace_seconds = float(grace_seconds)
        # Held while a file is marked used or checked and removed, and while a folder is made or removed, so that
        # neither removes what the other has just handed out.
        self._lock = threading.Lock()
        self._evicting = threading.Lock()
        self._estimate: int | None = None  # bytes at the last scan, plus those written since; None: not scanned
        self._no_scan_before = 0.0  # until then every file beyond the cap is within its grace period

    def keep_bytes(self, data: bytes, suffix: str = ".png") -> Path:
        """`data` as a file named by its content (SHA-256): written if absent, marked as used now if present."""
        return self.keep(hashlib.sha256(data).hexdigest() + suffix, lambda file: file.write(data))

    def keep(self, relative: str, write: Callable[[BinaryIO], object]) -> Path:
        """The file at `relative` in the folder, marked as used now; when absent, `write` fills a temporary file that
        is then renamed into place, so a reader sees the whole file or none."""
        path = self.folder / relative
        with self._lock:
            try:
                os.utime(path)
                return path
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle, staging = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as file:
                write(file)
            size = disk_bytes(os.stat(staging))
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        self._added(size)
        return path

    def _added(self, size: int) -> None:
        with self._lock:
            if self._estimate is not None:
                self._estimate += size
            due = self._estimate is None or self._estimate > self.cap_bytes
        if due and time.time() >= self._no_scan_before:
            self.evict()

    def evict(self) -> list[Path]:
        """Scan the folder (files of other processes count too) and, over the cap, remove the least recently used
        files until it is within `LOW_WATER` of the cap, sparing those used within the grace period. Returns the
        files removed; none when another thread is evicting."""
        if not self._evicting.acquire(blocking=False):
            return []
        try:
            files = sorted(self._scan())  # (last use, bytes, path), least recently used first
            total = sum(size for _, size, _ in files)
            removed = []
            if total > self.cap_bytes:
                now, self._no_scan_before = time.time(), 0.0
                for last_use, size, path in files:
                    if total <= self.cap_bytes * LOW_WATER:
                        break
                    if now - last_use < self.grace_seconds:
                        self._no_scan_before = last_use + self.grace_seconds  # every later file is younger
                        break
                    if self._remove_unused(path, now):
                        total -= size
                        removed.append(path)
            with self._lock:
                self._estimate = total
            return removed
        finally:
            self._evicting.release()

    def total_bytes(self) -> int:
        """Disk space the folder's files take now."""
        return sum(size for _, size, _ in self._scan())

    def _scan(self) -> list[tuple[float, int, Path]]:
        found = []
        for parent, _, names in os.walk(self.folder):
            for name in names:
                path = Path(parent) / name
                try:
                    status = path.stat()
                except FileNotFoundError:
                    continue
                found.append((status.st_mtime, disk_bytes(status), path))
        return found

    def _remove_unused(self, path: Path, now: float) -> bool:
        with self._lock:
            try:
                if now - path.stat().st_mtime < self.grace_seconds:  # handed out again since the scan
                    return False
                path.unlink()
            except FileNotFoundError:
                return False
            if path.parent != self.folder:
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only when empty
            return True


def disk_bytes(status: os.stat_result) -> int:
    """What a file takes on disk: its blocks (a small file takes a whole one), at least its length."""
    return max(status.st_size, getattr(status, "st_blocks", 0) * 512)


def remove_empty_entries(root: Path, older_than: float) -> int:
    """Remove the empty folders and empty files directly under `root` that have not changed for `older_than` seconds;
    returns how many. An upload cache that removes old files (Gradio's delete_cache) leaves their folders behind, and
    Gradio's gr.File leaves an empty temporary file there at every call (6.31), which nothing removes.

    The age keeps a folder just made for a file that is about to be moved in, and a file being written. A writer that
    reuses a folder empty for that long could still lose it in the instant between making sure it exists and moving
    its file in; the move then fails and that one request with it."""
    removed, now = 0, time.time()
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            status = entry.stat(follow_symlinks=False)
            if now - status.st_mtime <= older_than:
                continue
            if entry.is_dir(follow_symlinks=False):
                os.rmdir(entry.path)  # refuses a folder that is not empty
            elif entry.is_file(follow_symlinks=False) and status.st_size == 0:
                os.unlink(entry.path)
            else:
                continue
            removed += 1
        except OSError:
            continue
    return removed


def remove_stale_folders(parent: Path, prefix: str, older_than: float) -> int:
    """Remove the folders in `parent` named `prefix*` that have not changed for `older_than` seconds, with all in
    them; returns how many."""
    removed, now = 0, time.time()
    for folder in Path(parent).glob(f"{prefix}*"):
        try:
            if folder.is_dir() and not folder.is_symlink() and now - folder.stat().st_mtime > older_than:
                shutil.rmtree(folder)
                removed += 1
        except OSError:
            continue
    return removed


class DiskSweeper:
    """Every `limits.sweep_every` seconds, from `start` to `stop`, in a daemon thread: `sweep_once`."""

    def __init__(
        self,
        limits: DiskLimits,
        stores: list[FileStore],
        upload_cache: Path | None = None,
        temp_folder: Path | None = None,
    ):
        self.limits = limits
        self.stores = stores
        self.upload_cache = upload_cache
        self.temp_folder = Path(temp_folder or tempfile.gettempdir())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self) -> None:
        """Evict each store over its cap; remove the upload cache's empty folders and files (after one sweep
        interval) and zip extractions older than the upload age (at least ORPHAN_MIN_AGE)."""
        for store in self.stores:
            store.evict()
        if self.upload_cache is not None:
            remove_empty_entries(self.upload_cache, self.limits.sweep_every)
        remove_stale_folders(self.temp_folder, ZIP_FOLDER_PREFIX, max(self.limits.cache_max_age, ORPHAN_MIN_AGE))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="disk-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.limits.sweep_every):
            try:
                self.sweep_once()
            except Exception:  # a failed sweep must not end the sweeps; the next one tries again
                logger.exception("disk sweep failed")
