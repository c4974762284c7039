"""Where training runs: device and precision choice, torchrun processes."""
