"""Serve Faster R-CNN v1, v2 or both over HTTP.

The command lives in `frcnn.cli.serve`; this file keeps `python serve.py ...` working in a clone.
"""

import sys

from frcnn.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
