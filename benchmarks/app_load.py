"""The app under concurrent load, on 127.0.0.1 only: errors, latency percentiles, throughput, server memory.

    python benchmarks/app_load.py                        # 32 workers, 60 s or 5,000 requests, bundled models
                                                         # (up to 180 s if 60 s is short of 1,200 requests)
    python benchmarks/app_load.py --workers 8 --duration 30 --concurrency-limit 4
    python benchmarks/app_load.py --images 2 --query-share 0   # every request the same pair: identical outputs
    python benchmarks/app_load.py --reuse-ssl-context          # without gradio_client's per-call TLS setup cost

Starts `app.py` in a subprocess on a free local port (its own GRADIO_TEMP_DIR and temp folder, in a folder removed
at the end; stderr kept to count server-side errors), measures single-client latency first, then runs N
gradio_client workers, each in its own session, doing pair comparisons and queries against a small gallery it
built, on small generated images. The clients download the output files, as gradio_client does by default.
Stops by itself: at the time limit (extended, up to --max-duration, until the warm-up and the 1,000-request memory
window are done), at the request limit, or when a request outlives its timeout; the server is always terminated.

Reports requests, errors by type, p50/p95/p99 latency, throughput, the single-client latency of the same run,
server-side protocol errors from its log, and the server's RSS growth over 1,000 requests (after a warm-up),
next to the targets, and the CPU time of server and clients. The workers are threads in this one process, so on
a small machine the clients compete with the server for CPU: figures from a shared 2-core machine are inflated.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))  # run as a script from anywhere
TARGET_ERRORS = 0
TARGET_P95_FACTOR = 10.0  # p95 under load at most this many times the single-client latency
TARGET_RSS_GROWTH_MB = 50.0
RSS_WINDOW = 1000  # requests over which the server's RSS growth is measured
SERVER_ERROR_MARKERS = ("LocalProtocolError", "Too little data for declared Content-Length", "Traceback")
# The server runs app.main() with the queue settings this benchmark was asked to try.
LAUNCHER = (
    "import sys; sys.path.insert(0, {root!r}); import app; "
    "app.CONCURRENCY_LIMIT = {concurrency_limit}; app.QUEUE_SIZE = {queue_size}; "
    "app.main(['--host', '127.0.0.1', '--port', '{port}'])"
)


def generated_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """`count` small PNGs of white strokes on black (digit-like), named `shapeK_i.png` so K is the label."""
    from PIL import Image, ImageDraw

    generator = random.Random(seed)
    paths = []
    for index in range(count):
        image = Image.new("L", (28, 28), 0)
        draw = ImageDraw.Draw(image)
        for _ in range(2 + index % 3):
            points = [(generator.randint(4, 23), generator.randint(4, 23)) for _ in range(3)]
            draw.line(points, fill=255, width=3)
        path = folder / f"shape{index % 4}_{index}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def server_rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS line for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    port: int,
    concurrency_limit: int,
    queue_size: int,
    workdir: Path,
    timeout: float = 120.0,
    environment: dict[str, str] | None = None,
):
    """app.main() in a subprocess, with `environment` added to this one's, writing only under `workdir`: Gradio's
    files in gradio/, everything else the server puts in the temp folder (previews, zip extractions) in tmp/.
    Returns (process, log file, log path) once the page answers."""
    log_path = workdir / "server.log"
    log = log_path.open("wb")
    code = LAUNCHER.format(root=str(HERE), concurrency_limit=concurrency_limit, queue_size=queue_size, port=port)
    (workdir / "tmp").mkdir(exist_ok=True)
    environment = {
        **os.environ,
        **(environment or {}),
        "GRADIO_TEMP_DIR": str(workdir / "gradio"),
        "TMPDIR": str(workdir / "tmp"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=HERE, stdout=log, stderr=subprocess.STDOUT, env=environment
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise RuntimeError(f"app.py exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return process, log, log_path
        except OSError:
            time.sleep(0.2)
    process.kill()
    log.close()
    raise TimeoutError(f"app.py did not answer on {url} within {timeout:.0f} s")


def stop_server(process: subprocess.Popen, log, log_path: Path, keep_log: Path | None = None) -> str:
    """Terminate the server (kill it after 15 s); returns its log, copied to `keep_log` when given."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()
    server_log = log_path.read_text(errors="replace")
    if keep_log:
        keep_log.write_text(server_log)
    return server_log


@dataclass
class Tally:
    """What the workers record, under one lock."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter = field(default_factory=collections.Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    completed: int = 0  # requests finished, with or without error
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float | None, error: BaseException | None = None) -> None:
        with self.lock:
            self.completed += 1
            if error is None:
                self.latencies[kind].append(seconds)
            else:
                name = type(error).__name__
                self.errors[name] += 1
                self.error_examples.setdefault(
                    name, f"{kind}: {str(error).splitlines()[0][:200] if str(error) else ''}"
                )


class Worker:
    """One gradio_client session: builds its gallery once, then alternates pair comparisons and queries."""

    def __init__(self, url: str, model: str, images: list[str], seed: int, download_dir: Path | None):
        from gradio_client import Client, handle_file

        self.client = Client(url, verbose=False, download_files=str(download_dir) if download_dir else False)
        self.handle_file = handle_file
        self.model = model
        self.images = images
        self.random = random.Random(seed)

    def build_gallery(self, timeout: float) -> None:
        files = [self.handle_file(path) for path in self.images[:8]]  # (labels from the names)
        self.client.submit(self.model, files, "", api_name="/build_gallery").result(timeout=timeout)

    def pair(self, timeout: float) -> None:
        first, second = self.random.sample(self.images, 2)
        self.client.submit(
            self.model, None, self.handle_file(first), None, self.handle_file(second), api_name="/compare_pair"
        ).result(timeout=timeout)

    def query(self, timeout: float) -> None:
        query = self.handle_file(self.random.choice(self.images))
        self.client.submit(self.model, None, query, 3, api_name="/rank_query").result(timeout=timeout)


def reuse_client_ssl_context() -> None:
    """Make httpx build its default SSL context once per process instead of once per connection.

    gradio_client opens a new httpx client for nearly every HTTP call, and each one loads the CA bundle (about
    25 ms of CPU), although nothing here uses TLS. On a small machine that client-side cost competes with the
    server; this option takes it out, for the clients of both the single-client and the load phase alike.
    """
    import functools

    import httpx._transports.default as transport

    cached = functools.lru_cache(maxsize=4)(transport.create_ssl_context)
    transport.create_ssl_context = lambda verify=True, cert=None, trust_env=True: cached(verify, cert, trust_env)


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_load(args, url: str, images: list[str], download_dir: Path | None, server_pid: int) -> dict:
    """The timed phase: `args.workers` threads until the time or request limit; returns the figures."""
    tally = Tally()
    stop = threading.Event()
    models = args.models.split(",")
    workers = [
        Worker(url, models[index % len(models)], images, seed=index, download_dir=download_dir)
        for index in range(args.workers)
    ]
    for worker in workers:  # galleries before the clock starts: each session holds its own
        worker.build_gallery(args.request_timeout)
    rss_samples: list[tuple[int, float]] = []  # (requests completed, server RSS MB)

    def work(worker: Worker) -> None:
        while not stop.is_set():
            with tally.lock:
                if tally.completed >= args.max_requests:
                    stop.set()
                    return
            kind = "query" if worker.random.random() < args.query_share else "pair"
            start = time.perf_counter()
            try:
                (worker.query if kind == "query" else worker.pair)(args.request_timeout)
            except Exception as error:  # every failure is counted by type, which is what this measures
                tally.record(kind, None, error)
            else:
                tally.record(kind, time.perf_counter() - start)

    def monitor() -> None:
        while not stop.is_set():
            rss_samples.append((tally.completed, server_rss_mb(server_pid)))
            stop.wait(0.25)

    threads = [threading.Thread(target=work, args=(worker,), daemon=True) for worker in workers]
    server_cpu, client_cpu = cpu_seconds(server_pid), cpu_seconds(os.getpid())
    watcher = threading.Thread(target=monitor, daemon=True)
    start = time.perf_counter()
    watcher.start()
    for thread in threads:
        thread.start()
    stop.wait(args.duration)
    # Past the duration only to complete the memory window (on a slow machine 60 s falls short of it).
    while not stop.is_set() and tally.completed < args.warmup + RSS_WINDOW:
        if time.perf_counter() - start >= args.max_duration:
            break
        stop.wait(0.25)
    stop.set()
    # A request in flight gets its own timeout to finish; none is waited for longer.
    deadline = time.monotonic() + args.request_timeout + 5
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - start
    server_cpu, client_cpu = cpu_seconds(server_pid) - server_cpu, cpu_seconds(os.getpid()) - client_cpu
    still_running = sum(thread.is_alive() for thread in threads)
    rss_samples.append((tally.completed, server_rss_mb(server_pid)))
    for worker in workers:
        worker.client.close()
    return {
        "tally": tally,
        "elapsed": elapsed,
        "still_running": still_running,
        "rss": rss_samples,
        "cpu": (server_cpu, client_cpu),
    }


def rss_growth(samples: list[tuple[int, float]], warmup: int, window: int) -> tuple[float, int] | None:
    """RSS change between the first sample at >= `warmup` requests and the first at >= `warmup + window`."""
    start = next(((count, rss) for count, rss in samples if count >= warmup), None)
    if start is None:
        return None
    end = next(((count, rss) for count, rss in samples if count >= start[0] + window), samples[-1])
    return end[1] - start[1], end[0] - start[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of load; longer only to reach warm-up + 1,000 requests"
    )
    parser.add_argument("--max-duration", type=float, default=180.0, help="seconds of load at the most")
    parser.add_argument("--max-requests", type=int, default=5000, help="stop after this many requests")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds before a request counts failed")
    parser.add_argument("--models", default="mnist,faces", help="bundled models to use, comma separated")
    parser.add_argument("--images", type=int, default=12, help="generated images (fewer: more identical outputs)")
    parser.add_argument("--query-share", type=float, default=0.3, help="share of gallery queries among requests")
    parser.add_argument("--single-repeats", type=int, default=20, help="single-client requests of each kind")
    parser.add_argument("--warmup", type=int, default=200, help="requests under load before RSS is first read")
    parser.add_argument("--concurrency-limit", type=int, default=None, help="default: app.CONCURRENCY_LIMIT")
    parser.add_argument("--queue-size", type=int, default=None, help="default: app.QUEUE_SIZE")
    parser.add_argument("--no-download", action="store_true", help="clients do not download output files")
    parser.add_argument("--keep-log", type=Path, help="copy the server's log here (to read its errors)")
    parser.add_argument(
        "--reuse-ssl-context", action="store_true", help="clients build httpx's SSL context once (see its docstring)"
    )
    args = parser.parse_args()
    if args.reuse_ssl_context:
        reuse_client_ssl_context()

    import app

    concurrency_limit = args.concurrency_limit or app.CONCURRENCY_LIMIT
    queue_size = args.queue_size or app.QUEUE_SIZE
    with tempfile.TemporaryDirectory(prefix="app_load_") as folder:
        workdir = Path(folder)
        (workdir / "images").mkdir()
        images = generated_images(workdir / "images", args.images)
        download_dir = None if args.no_download else workdir / "downloads"
        port = app.free_port()
        process, log, log_path = start_server(port, concurrency_limit, queue_size, workdir)
        try:
            url = f"http://127.0.0.1:{port}/"
            model = args.models.split(",")[0]
            single = Worker(url, model, images, seed=-1, download_dir=download_dir)
            single.build_gallery(args.request_timeout)
            single.pair(args.request_timeout)  # first calls load code paths; not timed
            single.query(args.request_timeout)
            single_pair = [timed(lambda: single.pair(args.request_timeout)) for _ in range(args.single_repeats)]
            single_query = [timed(lambda: single.query(args.request_timeout)) for _ in range(args.single_repeats)]
            rss_before_load = server_rss_mb(process.pid)
            result = run_load(args, url, images, download_dir, process.pid)
        finally:
            server_log = stop_server(process, log, log_path, args.keep_log)

    tally, elapsed = result["tally"], result["elapsed"]
    succeeded = sum(len(values) for values in tally.latencies.values())
    errors = sum(tally.errors.values())
    single_all = single_pair + single_query
    print(f"\nserver: concurrency_limit={concurrency_limit} queue_size={queue_size}; clients: {args.workers} workers, ")
    print(
        f"  models {args.models}, {args.query_share:.0%} queries, downloads {'off' if args.no_download else 'on'}, "
        f"SSL context {'reused' if args.reuse_ssl_context else 'per connection (stock gradio_client)'}"
    )
    print(
        f"single client: pair p50 {statistics.median(single_pair) * 1000:.0f} ms, "
        f"query p50 {statistics.median(single_query) * 1000:.0f} ms ({args.single_repeats} each)"
    )
    print(
        f"load: {tally.completed} requests in {elapsed:.1f} s = {tally.completed / elapsed:.1f} requests/s; "
        f"{succeeded} ok, {errors} errors"
        + (f"; {result['still_running']} workers still waiting at the end" if result["still_running"] else "")
    )
    server_cpu, client_cpu = result["cpu"]
    print(
        f"CPU during the load: server {server_cpu:.0f} s, clients {client_cpu:.0f} s "
        f"({(server_cpu + client_cpu) / elapsed:.2f} cores busy on average, of {os.cpu_count()})"
    )
    for name, count in tally.errors.most_common():
        print(f"  error {name}: {count} (e.g. {tally.error_examples[name]})")
    for name in SERVER_ERROR_MARKERS:
        count = server_log.count(name)
        if count:
            print(f"  server log: {count} x {name!r}")
    print(f"{'latency under load':22s} {'n':>6s} {'p50':>8s} {'p95':>8s} {'p99':>8s}")
    rows = dict(tally.latencies)
    rows["all"] = [value for values in tally.latencies.values() for value in values]
    for name, values in rows.items():
        print(
            f"{name:22s} {len(values):6d} " + " ".join(f"{percentile(values, q) * 1000:6.0f}ms" for q in (50, 95, 99))
        )
    growth = rss_growth(result["rss"], args.warmup, RSS_WINDOW)
    print(f"server RSS: {rss_before_load:.0f} MB before the load, {result['rss'][-1][1]:.0f} MB at the end")
    milestones = [
        next((f"{rss:.0f} MB at {count}" for count, rss in result["rss"] if count >= mark), None)
        for mark in range(0, tally.completed + 1, RSS_WINDOW)
    ]
    print("  by requests done: " + "; ".join(filter(None, milestones)))

    single_p50 = statistics.median(single_all)
    p95 = percentile(rows["all"], 95)
    checks = [
        ("errors", f"{errors}", f"{TARGET_ERRORS}", errors <= TARGET_ERRORS),
        (
            "p95 / single-client p50",
            f"{p95 / single_p50:.1f}x ({p95 * 1000:.0f} / {single_p50 * 1000:.0f} ms)",
            f"<= {TARGET_P95_FACTOR:.0f}x",
            p95 <= TARGET_P95_FACTOR * single_p50,
        ),
    ]
    if growth is None:
        checks.append(("RSS growth", f"n/a (under {args.warmup} requests)", f"< {TARGET_RSS_GROWTH_MB:.0f} MB", False))
    else:
        delta, window = growth
        shown = f"{delta:+.1f} MB over {window} requests" + ("" if window >= RSS_WINDOW else " (short of 1,000)")
        checks.append(
            (
                "RSS growth",
                shown,
                f"< {TARGET_RSS_GROWTH_MB:.0f} MB",
                window >= RSS_WINDOW and delta < TARGET_RSS_GROWTH_MB,
            )
        )
    print(f"\n{'check':26s} {'measured':40s} {'target':>10s}")
    for name, measured, target, ok in checks:
        print(f"{name:26s} {measured:40s} {target:>10s}  {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
