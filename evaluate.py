"""Measure box mAP of Faster R-CNN v1 / v2 on COCO val2017 or any COCO-format set, with pycocotools.

The command lives in `frcnn.cli.evaluate`; this file keeps `python evaluate.py ...` working in a clone.
"""

import sys

from frcnn.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
