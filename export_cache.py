"""The cache of exported models that the ONNX Runtime and OpenVINO backends use (about 170 MB per model and size):

The command lives in `frcnn.cli.export_cache`; this file keeps `python export_cache.py ...` working in a clone.
"""

import sys

from frcnn.cli.export_cache import main

if __name__ == "__main__":
    sys.exit(main())
