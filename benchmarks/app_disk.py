"""The app's disk use under a soak, on 127.0.0.1 only: every folder the server writes, before and after its cleanup.

    python benchmarks/app_disk.py                        # 2,000 pairs and 50 zip galleries, twice; uploads kept 60 s
    python benchmarks/app_disk.py --pairs 200 --zips 5   # a quick look
    python benchmarks/app_disk.py --cache-age 120 --grace 120

Starts app.main() in a subprocess (as benchmarks/app_load.py does) with a temp folder of its own (TMPDIR), so
everything the server writes lies in folders that only it writes and that this benchmark measures:
  gradio                 Gradio's uploads and its copies of outputs (GRADIO_TEMP_DIR)
  siamese_previews       the preview store: pair previews and gallery thumbnails, written once
  siamese_shown_uploads  PNG copies of uploads browsers cannot show (a page-only event; not called here)
  siamese-zip-*          zip gallery extractions
  other                  anything else in the server's temp folder
The cleanup interval is short so that the run is: the server gets SIAMESE_CACHE_MAX_AGE=--cache-age (uploads
removed --cache-age to 1.25 x --cache-age seconds after they came) and SIAMESE_PREVIEW_GRACE=--grace; the preview
cap is the app's default unless --preview-cap-mb is given.

A round: --pairs pair comparisons through Gradio's HTTP API by --workers clients, each with two fresh uploads
(1-megapixel JPEGs, different pixels every time), downloading the preview as a browser does; then --zips zip
galleries of --zip-images fresh 1-megapixel JPEGs in 4 labels, downloading the thumbnails. Models alternate (mnist,
faces). After a round it waits the cleanup interval with no requests and measures again. Two rounds; the workdir
is removed at the end. Reports each folder's disk use (blocks, as du counts them, folders included) at the start,
after each round and after each cleanup, the largest seen during the run, the growth after the cleanups against
the 100 MB target, requests, errors, server log errors and the run time.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import random
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))  # run as a script from anywhere

from benchmarks.app_latency import HttpApi  # noqa: E402
from benchmarks.app_load import SERVER_ERROR_MARKERS, start_server, stop_server  # noqa: E402

TARGET_GROWTH_MB = 100.0
IMAGE_SIDE = 1000  # 1 megapixel
FOLDERS = ("gradio", "siamese_previews", "siamese_shown_uploads", "siamese-zip-*", "other")


class FreshImages:
    """1-megapixel JPEGs whose pixels differ every time: one of a few grainy colour gradients (about 200 KB as a
    JPEG, as a photo is) with random discs drawn on."""

    def __init__(self, seed: int, bases: int = 6):
        self.random = random.Random(seed)
        grain = np.random.default_rng(seed)
        rows, columns = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE] / IMAGE_SIDE  # (H, W)
        self.bases = []
        for _ in range(bases):
            weights = [self.random.uniform(-1, 1) for _ in range(6)]
            channels = [128 + 100 * np.sin(3 * (weights[c] * rows + weights[c + 3] * columns)) for c in range(3)]
            pixels = np.stack(channels, axis=-1) + grain.normal(0, 6, (IMAGE_SIDE, IMAGE_SIDE, 3))  # (H, W, 3)
            self.bases.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
        self.lock = threading.Lock()

    def jpeg(self) -> bytes:
        with self.lock:  # one generator for all threads: its draws are not thread-safe
            base = self.random.choice(self.bases)
            discs = []
            for _ in range(6):
                left, top = self.random.randrange(0, IMAGE_SIDE - 200), self.random.randrange(0, IMAGE_SIDE - 200)
                size = self.random.randrange(60, 200)
                discs.append(((left, top, left + size, top + size), tuple(self.random.randrange(256) for _ in "rgb")))
        image = base.copy()
        draw = ImageDraw.Draw(image)
        for box, colour in discs:
            draw.ellipse(box, fill=colour)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    def zip_gallery(self, count: int) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for index in range(count):
                archive.writestr(f"label{index % 4}/{index}.jpg", self.jpeg())
        return buffer.getvalue()


def disk_use(workdir: Path) -> dict[str, tuple[int, int]]:
    """Bytes on disk (blocks, as du counts them, folders included) and entries, per FOLDERS group: the server's
    GRADIO_TEMP_DIR (workdir/gradio) and its temp folder (workdir/tmp), grouped by the name of each top folder."""
    use: dict[str, list[int]] = {name: [0, 0] for name in FOLDERS}
    for root, group in ((workdir / "gradio", "gradio"), (workdir / "tmp", None)):
        for parent, _, files in os.walk(root):
            relative = Path(parent).relative_to(root)
            tally = use[group or group_of(relative.parts[0] if relative.parts else "")]
            if relative.parts:
                add(tally, Path(parent))
            for name in files:
                add(tally, Path(parent) / name)
    return {name: (total, count) for name, (total, count) in use.items()}


def group_of(name: str) -> str:
    """The FOLDERS group of a top folder in the server's temp folder."""
    if name.startswith("siamese-zip-"):
        return "siamese-zip-*"
    return name if name in FOLDERS else "other"


def add(tally: list[int], path: Path) -> None:
    try:
        tally[0] += os.lstat(path).st_blocks * 512
        tally[1] += 1
    except FileNotFoundError:
        pass


class Client:
    """One browser-like session: uploads through /gradio_api/upload, calls, downloads the files it is shown."""

    def __init__(self, url: str, scratch: Path, images: FreshImages):
        self.api, self.images = HttpApi(url), images
        self.scratch = Path(tempfile.mkdtemp(dir=scratch))  # its own: the clients' files have the same names
        self.uploaded_bytes = 0

    def upload(self, data: bytes, name: str) -> dict:
        path = self.scratch / name
        path.write_bytes(data)
        try:
            self.uploaded_bytes += len(data)
            return self.api.upload(str(path))
        finally:
            path.unlink()

    def download(self, file: dict) -> None:
        self.api.http.get(file["url"]).raise_for_status()

    def pair(self, model: str) -> None:
        first = self.upload(self.images.jpeg(), "a.jpg")
        second = self.upload(self.images.jpeg(), "b.jpg")
        _, _, _, preview = self.api.call("compare_pair", model, None, first, None, second)
        self.download(preview)

    def zip_gallery(self, model: str, count: int) -> None:
        archive = self.upload(self.images.zip_gallery(count), "gallery.zip")
        _, summary, thumbnails = self.api.call("build_gallery", model, [archive], "")
        if f"{count}** images" not in summary:
            raise RuntimeError(f"the gallery is not {count} images: {summary[:200]}")
        for item in thumbnails:
            self.download(item["image"])


def run_round(url: str, scratch: Path, args, seed: int, errors: collections.Counter, examples: dict) -> dict:
    """--pairs pair comparisons by --workers clients, then --zips zip galleries; returns counts and bytes sent."""
    images = FreshImages(seed)
    clients = [Client(url, scratch, images) for _ in range(args.workers)]
    models = ["mnist", "faces"]
    jobs = collections.deque(range(args.pairs))
    lock = threading.Lock()
    done = collections.Counter()

    def work(client: Client) -> None:
        while True:
            with lock:
                if not jobs:
                    return
                index = jobs.popleft()
            try:
                client.pair(models[index % 2])
            except Exception as error:  # every failure is counted by type, which is what this measures
                with lock:
                    errors[f"pair {type(error).__name__}"] += 1
                    examples.setdefault(type(error).__name__, str(error)[:300])
            else:
                with lock:
                    done["pairs"] += 1
                    if done["pairs"] % 500 == 0:
                        print(f"  {done['pairs']} pairs", flush=True)

    threads = [threading.Thread(target=work, args=(client,), daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(args.zips):
        try:
            clients[index % len(clients)].zip_gallery(models[index % 2], args.zip_images)
        except Exception as error:  # counted as above
            errors[f"zip {type(error).__name__}"] += 1
            examples.setdefault(type(error).__name__, str(error)[:300])
        else:
            done["zips"] += 1
    for client in clients:
        client.api.http.close()
    return {**done, "uploaded_mb": sum(client.uploaded_bytes for client in clients) / 2**20}


class Monitor:
    """The largest disk use of each group seen while the benchmark runs, sampled every few seconds."""

    def __init__(self, workdir: Path, every: float = 2.0):
        self.workdir, self.every = workdir, every
        self.peak = {name: 0 for name in FOLDERS}
        self.peak_zip_folders = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(self.every):
            for name, (total, _) in disk_use(self.workdir).items():
                self.peak[name] = max(self.peak[name], total)
            zip_folders = len(list((self.workdir / "tmp").glob("siamese-zip-*")))
            self.peak_zip_folders = max(self.peak_zip_folders, zip_folders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="pair comparisons per round")
    parser.add_argument("--zips", type=int, default=50, help="zip galleries per round")
    parser.add_argument("--zip-images", type=int, default=20, help="1-megapixel JPEGs in each zip")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="concurrent clients for the pairs")
    parser.add_argument("--cache-age", type=int, default=60, help="SIAMESE_CACHE_MAX_AGE for the server, seconds")
    parser.add_argument("--grace", type=float, default=60, help="SIAMESE_PREVIEW_GRACE for the server, seconds")
    parser.add_argument("--preview-cap-mb", type=float, help="SIAMESE_PREVIEW_CAP_MB (default: the app's)")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here")
    args = parser.parse_args()

    import app  # the client's own start-up; only for the queue settings the server runs with

    sweep_every = max(1, args.cache_age // 4)
    # Gradio removes a file at its first check past the age; the sweep removes the emptied folder (one sweep interval
    # old) at the next sweep or the one after; then a margin.
    wait = args.cache_age + 3 * sweep_every + 10
    environment = {"SIAMESE_CACHE_MAX_AGE": str(args.cache_age), "SIAMESE_PREVIEW_GRACE": str(args.grace)}
    if args.preview_cap_mb is not None:
        environment["SIAMESE_PREVIEW_CAP_MB"] = str(args.preview_cap_mb)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="app_disk_") as folder:
        workdir = Path(folder)
        (workdir / "scratch").mkdir()
        port = app.free_port()
        process, log, log_path = start_server(
            port, app.CONCURRENCY_LIMIT, app.QUEUE_SIZE, workdir, environment=environment
        )
        url = f"http://127.0.0.1:{port}/"
        errors: collections.Counter = collections.Counter()
        examples: dict[str, str] = {}
        snapshots: list[tuple[str, dict]] = [("start", disk_use(workdir))]
        rounds = []
        monitor = Monitor(workdir)
        monitor.thread.start()
        try:
            for number in range(1, args.rounds + 1):
                print(f"round {number}: {args.pairs} pairs, {args.zips} zip galleries", flush=True)
                round_start = time.perf_counter()
                rounds.append(run_round(url, workdir / "scratch", args, number, errors, examples))
                rounds[-1]["seconds"] = time.perf_counter() - round_start
                snapshots.append((f"after round {number}", disk_use(workdir)))
                print(f"  waiting {wait} s for the cleanup", flush=True)
                time.sleep(wait)
                snapshots.append((f"cleaned {number}", disk_use(workdir)))
        finally:
            monitor.stop.set()
            server_log = stop_server(process, log, log_path, args.keep_log)
    report(args, snapshots, rounds, monitor, errors, examples, server_log, wait, time.perf_counter() - started)


def megabytes(total: int) -> str:
    return f"{total / 2**20:.1f}"


def report(args, snapshots, rounds, monitor, errors, examples, server_log, wait, elapsed) -> None:
    print(
        f"\nserver: SIAMESE_CACHE_MAX_AGE={args.cache_age} (checked every {max(1, args.cache_age // 4)} s), "
        f"SIAMESE_PREVIEW_GRACE={args.grace:g}, SIAMESE_PREVIEW_CAP_MB={args.preview_cap_mb or 'default'}; "
        f"{wait} s idle before each cleaned reading"
    )
    for number, figures in enumerate(rounds, start=1):
        print(
            f"round {number}: {figures.get('pairs', 0)} of {args.pairs} pairs and {figures.get('zips', 0)} of "
            f"{args.zips} zip galleries ({args.zip_images} images each) ok, {figures['uploaded_mb']:.0f} MB uploaded, "
            f"{figures['seconds']:.0f} s"
        )
    print(f"errors: {sum(errors.values())}" + "".join(f"; {name}: {count}" for name, count in errors.items()))
    for name, example in examples.items():
        print(f"  e.g. {name}: {example}")
    for marker in SERVER_ERROR_MARKERS:
        if server_log.count(marker):
            print(f"  server log: {server_log.count(marker)} x {marker!r}")
    labels = "".join(f"{label:>18s}" for label, _ in snapshots)
    print(f"\ndisk use, MB (entries){'':10s}{labels}{'largest':>10s}")
    for name in FOLDERS:
        cells = "".join(f"{megabytes(use[name][0]) + f' ({use[name][1]})':>18s}" for _, use in snapshots)
        print(f"{name:32s}{cells}{megabytes(monitor.peak[name]):>10s}")
    totals = [sum(total for total, _ in use.values()) for _, use in snapshots]
    print(f"{'total':32s}" + "".join(f"{megabytes(total):>18s}" for total in totals))
    print(f"zip extraction folders at once, at most (sampled every {monitor.every:g} s): {monitor.peak_zip_folders}")
    growth = totals[-1] - totals[0]
    verdict = "ok" if growth < TARGET_GROWTH_MB * 2**20 else "MISSED"
    print(f"growth after the cleanup: {megabytes(growth)} MB (target < {TARGET_GROWTH_MB:.0f} MB) {verdict}")
    print(f"run time {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
