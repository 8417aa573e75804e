"""What the scripts share (reading inputs, naming and writing outputs): `frcnn.cli.shared`, by the name a clone has
always offered (`import detect_utils`)."""

from frcnn.cli.shared import *  # noqa: F401,F403
