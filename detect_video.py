"""Detect objects in videos, a webcam or a stream with Faster R-CNN v1, v2, or both side by side.

The command lives in `frcnn.cli.detect_video`; this file keeps `python detect_video.py ...` working in a clone.
"""

import sys

from frcnn.cli.detect_video import main

if __name__ == "__main__":
    sys.exit(main())
