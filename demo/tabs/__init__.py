"""One module per part of the page, each with a `build` that lays it out and wires its events."""
