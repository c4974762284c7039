"""Train a Siamese embedding network: `python train.py --help`. The work is done by `siamese.training.cli`."""

import sys

from siamese.training.cli import main, parse_arguments  # noqa: F401 - parse_arguments is part of this script's API

if __name__ == "__main__":
    sys.exit(main())
