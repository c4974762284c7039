"""The wheel holds the siamese package alone, with its console scripts; the README's three lines run from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_only_the_library_and_its_commands(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("siamese_similarity-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(name).decode() for name in names if name.endswith("entry_points.txt"))
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"siamese"}
    assert "siamese/__init__.py" in names and "siamese/cli.py" in names
    assert not any(name.startswith(("pretrained/", "tests/", "benchmarks/")) or name == "app.py" for name in names)
    assert "siamese = siamese.cli:main" in entry_points
    assert "siamese-train = siamese.cli:train_main" in entry_points


def test_the_three_line_example_runs_outside_the_checkout(tmp_path):
    code = (
        "from siamese import SiameseModel\n"
        f"model = SiameseModel.from_pretrained({str(ROOT / 'pretrained' / 'mnist')!r})\n"
        "import numpy as np\n"
        "one = np.zeros((28, 28), dtype=np.uint8); one[4:24, 13:16] = 255\n"
        "print(model.verify(one, one))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'same': True" in result.stdout and "'false_accept_rate'" in result.stdout
