"""Networks and their files: architectures, losses, the typed config, encode, strict load and atomic save."""
