"""Write the synthetic glyph data set: OUT/<group>/U+XXXX/NN.png (see siamese/glyphs.py).

python scripts/make_glyphs.py /tmp/glyphs --samples-per-class 20 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamese.data.glyphs import write_glyphs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to write (group/class/NN.png)")
    parser.add_argument("--samples-per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    counts = write_glyphs(arguments.out, arguments.samples_per_class, arguments.seed)
    print(f"Wrote {sum(counts.values())} classes in {len(counts)} groups to {arguments.out}: {counts}")


if __name__ == "__main__":
    main()
