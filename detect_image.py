"""Detect objects in photos with Faster R-CNN v1, v2, or both side by side.

The command lives in `frcnn.cli.detect_image`; this file keeps `python detect_image.py ...` working in a clone.
"""

import sys

from frcnn.cli.detect_image import main

if __name__ == "__main__":
    sys.exit(main())
