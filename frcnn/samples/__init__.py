"""The sample photo and clip that the commands run on when no --input is given, installed with the package.

`coffee.jpg` is "Coffee cup" by Rachel Michetti (courtesy of Pikolo Espresso Bar), released under CC0 and bundled
with scikit-image as `skimage.data.coffee()`, re-encoded as JPEG at 600x400. `sample.mp4` (2 s, 480x320, H.264) is
a slow pan and zoom over it, made by `tools/make_sample_video.py` in a clone.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
SAMPLE_PHOTO = FOLDER / "coffee.jpg"
SAMPLE_VIDEO = FOLDER / "sample.mp4"
