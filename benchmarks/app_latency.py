"""App latency against the app started as `python app.py` in a subprocess.

    python benchmarks/app_latency.py                          # the bundled models in pretrained/
    python benchmarks/app_latency.py --model-dir /tmp/models  # folders mnist/ (and faces/) elsewhere

Measures: start-up (process start to the page answering), a pair comparison, a query against a
1,000-image gallery embedded once, and a 2,000-point t-SNE map the first time and from the cache.

Each request is timed two ways: through Gradio's HTTP API (`POST /gradio_api/call/<name>`, then the
result stream, on a kept-alive connection, images uploaded once as a browser does) and through
gradio_client. gradio_client adds a fixed cost of its own per call (about 70 ms here even for an
endpoint that returns a string at once: the `model info` row), so the targets are read against the
HTTP API rows. Prints medians next to the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))  # run as a script from anywhere
TARGETS = {
    "start-up (python app.py -> serving)": 10.0,
    "pair comparison (HTTP API)": 0.030,
    "query vs 1,000-image gallery (HTTP API)": 0.100,
    "t-SNE 2,000 points, first time": 10.0,
    "t-SNE 2,000 points, cached (HTTP API)": 0.5,
}


class HttpApi:
    """Gradio's documented HTTP API on one kept-alive connection, with one session (so gr.State persists)."""

    def __init__(self, url: str):
        import uuid

        import httpx

        self.url = url
        self.http = httpx.Client(timeout=120)
        self.session_hash = uuid.uuid4().hex[:12]

    def upload(self, path: str) -> dict:
        with open(path, "rb") as file:
            response = self.http.post(self.url + "gradio_api/upload", files=[("files", (Path(path).name, file))])
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}

    def call(self, api_name: str, *data):
        body = {"data": list(data), "session_hash": self.session_hash}
        event_id = self.http.post(f"{self.url}gradio_api/call/{api_name}", json=body).json()["event_id"]
        stream = self.http.get(f"{self.url}gradio_api/call/{api_name}/{event_id}").text
        event, payload = None, None
        for line in stream.splitlines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = line.split(":", 1)[1].strip()
        if event != "complete":
            raise RuntimeError(f"{api_name} failed: {event} {payload}")
        return json.loads(payload)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(
    model_dir: Path | None, port: int, temp_folder: Path, timeout: float = 60.0
) -> tuple[subprocess.Popen, float]:
    """`python app.py` with `temp_folder` as its temp folder (Gradio's uploads, previews); returns it and its start-up
    time once the page answers."""
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)]
    if model_dir is not None:
        command += ["--no-bundled"] + [
            argument
            for name in ("mnist", "faces")
            if (model_dir / name).is_dir()
            for argument in ("--model", str(model_dir / name))
        ]
    start = time.perf_counter()
    environment = {**os.environ, "TMPDIR": str(temp_folder)}
    process = subprocess.Popen(command, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise TimeoutError(f"app.py did not answer on {url} within {timeout:.0f} s")


def timed(call, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="folder holding mnist/ (default: pretrained/)")
    parser.add_argument("--model", default="mnist", help="which model to measure")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--map-points", type=int, default=2000)
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from siamese.data import examples as example_data

    digits = example_data.load_digits()
    pair = example_data.pair_examples(digits)[0]
    query = example_data.query_examples(digits)[0]
    model = args.model

    port = free_port()
    temp_folder = tempfile.TemporaryDirectory(prefix="app_latency_")  # removed with what the server wrote in it
    process, startup = start_app(args.model_dir, port, Path(temp_folder.name))
    results: dict[str, list[float]] = {"start-up (python app.py -> serving)": [startup]}
    try:
        url = f"http://127.0.0.1:{port}/"
        api = HttpApi(url)
        client = Client(url, verbose=False, download_files=False)
        uploaded = [api.upload(path) for path in pair]
        handles = [handle_file(path) for path in pair]

        def compare_http():
            api.call("compare_pair", model, None, uploaded[0], None, uploaded[1])

        def compare_client():
            client.predict(model, None, handles[0], None, handles[1], api_name="/compare_pair")

        compare_http()
        results["pair comparison (HTTP API)"] = timed(compare_http, args.repeats)
        results["pair comparison (gradio_client)"] = timed(compare_client, args.repeats)
        results["model info (gradio_client: its own floor)"] = timed(
            lambda: client.predict(model, api_name="/model_info"), args.repeats
        )

        start = time.perf_counter()
        outputs = api.call("load_example_gallery", model, "digits", 100)
        status = next((output for output in outputs if isinstance(output, str)), "")  # the state comes back as null
        results["build 1,000-image gallery (once)"] = [time.perf_counter() - start]
        if "1000** images" not in status:
            print(f"warning: the gallery is not 1,000 images: {status}", file=sys.stderr)
        query_file = api.upload(query)
        client.predict(model, "digits", 100, api_name="/load_example_gallery")  # the client's own session
        query_handle = handle_file(query)

        def rank_http():
            api.call("rank_query", model, None, query_file, 5)

        rank_http()
        results["query vs 1,000-image gallery (HTTP API)"] = timed(rank_http, args.repeats)
        results["query vs 1,000-image gallery (gradio_client)"] = timed(
            lambda: client.predict(model, None, query_handle, 5, api_name="/rank_query"), args.repeats
        )

        def tsne():
            api.call("embedding_map", model, args.map_points, 30, None)

        results["t-SNE 2,000 points, first time"] = timed(tsne, 1)
        results["t-SNE 2,000 points, cached (HTTP API)"] = timed(tsne, 5)
    finally:
        process.terminate()
        process.wait(timeout=10)
        temp_folder.cleanup()

    print(f"\n{'measurement':46s} {'median':>10s} {'target':>8s} {'runs':>5s}")
    for name, times in results.items():
        median = statistics.median(times)
        target = TARGETS.get(name)
        shown = f"{median * 1000:7.1f} ms" if median < 1 else f"{median:7.2f} s "
        target_text = "" if target is None else (f"{target * 1000:.0f} ms" if target < 1 else f"{target:.0f} s")
        flag = "" if target is None else ("  ok" if median <= target else "  OVER")
        print(f"{name:46s} {shown:>10s} {target_text:>8s} {len(times):5d}{flag}")


if __name__ == "__main__":
    main()
