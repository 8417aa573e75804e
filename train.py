"""Fine-tune Faster R-CNN v1 or v2 on your own boxes (COCO or YOLO format), validating box mAP every epoch.

The command lives in `frcnn.cli.train`; this file keeps `python train.py ...` working in a clone.
"""

import sys

from frcnn.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
