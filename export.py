"""Export a trained checkpoint of v1 or v2 (or the COCO weights) to ONNX or OpenVINO IR, with its metadata.

The command lives in `frcnn.cli.export`; this file keeps `python export.py ...` working in a clone.
"""

import sys

from frcnn.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
