"""Hand labels on a fixed validation sample: the human baseline and the agreement between people."""
