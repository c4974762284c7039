"""Face recognition with dlib's ResNet face descriptor ported to PyTorch."""
