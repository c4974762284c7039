"""Gallery uploads as labelled files: loose images, a folder of class sub-folders, or a .zip of one.

A file inside a class folder takes the folder's name as its label (`alice/1.png` -> "alice"); a
loose file has no label here (the caller names it from the file name). A .zip is extracted entry
by entry into a fresh temporary folder, after every entry has been checked: absolute names, `..`,
links, too many files or too many bytes are refused before anything is written. The folder lasts
as long as the `with` block that uses it (`extracted_zip`, `expanded_uploads`): a server that
unpacks galleries for months keeps none of them.
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ZIP_FOLDER_PREFIX = "siamese-zip-"  # extraction folders in the temp folder (a sweep finds those a killed process left)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_FILES = 1000
MAX_TOTAL_BYTES = 200 * 2**20  # 200 MiB unpacked, over a whole upload
MAX_FILE_BYTES = 20 * 2**20  # 20 MiB for one unpacked image
_CHUNK = 2**20


class UploadError(ValueError):
    """An upload that cannot be used as a gallery; the message says which file and why."""


@dataclass
class LabelledFile:
    """One image file of an upload: where it is, its label if a folder gave one, and the name to show."""

    path: str
    label: str | None
    name: str


@contextmanager
def expanded_uploads(
    paths: list[str], max_files: int = MAX_FILES, max_total_bytes: int = MAX_TOTAL_BYTES
) -> Iterator[list[LabelledFile]]:
    """Loose files as they are, folders and .zip archives as the image files of their class sub-folders.

    The files of a .zip lie in a temporary folder that is removed when the `with` block ends, however it ends.
    """
    with ExitStack() as extractions:
        files: list[LabelledFile] = []
        for path in paths:
            source = Path(path)
            if source.is_dir():
                files += folder_files(source)
            elif source.suffix.lower() == ".zip":
                folder = extractions.enter_context(extracted_zip(source, max_files, max_total_bytes))
                files += folder_files(folder, archive=source.name)
            else:
                files.append(LabelledFile(str(source), None, source.name))
                continue  # loose files are counted by the caller, which says how many came
            if len(files) > max_files:
                raise UploadError(
                    f"a gallery holds at most {max_files} images; {source.name} brings the upload past that"
                )
        yield files


def folder_files(root: Path, archive: str | None = None) -> list[LabelledFile]:
    """Image files under `root`, labelled by the folder that holds them (none for files directly in `root`)."""
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES or _is_hidden(relative):
            continue
        label = relative.parent.name if relative.parent != Path(".") else None
        shown = f"{archive}:{relative.as_posix()}" if archive else relative.as_posix()
        files.append(LabelledFile(str(path), label, shown))
    return files


def _is_hidden(relative: Path) -> bool:
    # macOS archives carry __MACOSX/ resource forks and ._ files beside the real images.
    return any(part.startswith(".") or part == "__MACOSX" for part in relative.parts)


def check_entry_name(name: str) -> PurePosixPath:
    """A zip entry's name as a safe relative path, or an UploadError for absolute names and `..`."""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise UploadError(f"the zip entry {name!r} has an absolute path; only relative paths are accepted")
    if ".." in path.parts:
        raise UploadError(f"the zip entry {name!r} climbs out of the archive with '..'")
    return path


@contextmanager
def extracted_zip(archive: Path, max_files: int = MAX_FILES, max_total_bytes: int = MAX_TOTAL_BYTES) -> Iterator[Path]:
    """The image entries of `archive` in a new temporary folder, after checking every entry; the folder and all in
    it are removed when the `with` block ends, also when extracting or what the block does fails."""
    target = _extract_zip(archive, max_files, max_total_bytes)
    try:
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _extract_zip(archive: Path, max_files: int, max_total_bytes: int) -> Path:
    try:
        with zipfile.ZipFile(archive) as opened:
            entries = [entry for entry in opened.infolist() if not entry.is_dir()]
            images = []
            for entry in entries:
                relative = check_entry_name(entry.filename)
                if stat.S_ISLNK(entry.external_attr >> 16):
                    raise UploadError(f"the zip entry {entry.filename!r} is a link; only plain files are accepted")
                if relative.suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(Path(relative)):
                    images.append((entry, relative))
            if len(images) > max_files:
                raise UploadError(
                    f"{archive.name} holds {len(images)} images; a gallery holds at most {max_files} images"
                )
            declared = sum(entry.file_size for entry, _ in images)
            if declared > max_total_bytes:
                raise UploadError(
                    f"{archive.name} unpacks to {declared / 2**20:.0f} MiB; at most {max_total_bytes / 2**20:.0f} MiB "
                    "are accepted"
                )
            target = Path(tempfile.mkdtemp(prefix=ZIP_FOLDER_PREFIX))
            try:
                _write_entries(opened, images, target, max_total_bytes)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
    except zipfile.BadZipFile as error:
        raise UploadError(f"{archive.name} is not a readable zip archive ({error})") from error
    return target


def _write_entries(opened: zipfile.ZipFile, images: list, target: Path, max_total_bytes: int) -> None:
    written_total = 0
    root = target.resolve()
    for entry, relative in images:
        destination = (target / Path(*relative.parts)).resolve()
        if not destination.is_relative_to(root):
            raise UploadError(f"the zip entry {entry.filename!r} would land outside the extraction folder")
        destination.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        # Sizes are counted while writing: the sizes an archive declares can lie.
        with opened.open(entry) as source, open(destination, "wb") as sink:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                written_total += len(chunk)
                if written > MAX_FILE_BYTES:
                    raise UploadError(f"the zip entry {entry.filename!r} is larger than {MAX_FILE_BYTES // 2**20} MiB")
                if written_total > max_total_bytes:
                    raise UploadError(f"the archive unpacks to more than {max_total_bytes // 2**20} MiB")
                sink.write(chunk)
