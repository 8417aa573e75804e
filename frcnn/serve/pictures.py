"""A picture's bytes checked before the model sees them: a known format, its size from the header before any
decoding (a few-KB PNG can claim 30000x30000), a JPEG that is not cut short, then decoded as the scripts decode."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from frcnn.core.errors import FrcnnError
from frcnn.core.files import decode_picture
from frcnn.serve.errors import ServiceError

_JPEG_START_OF_SCAN = b"\xff\xda"
_JPEG_END = b"\xff\xd9"


def picture_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int, str]:
    """Width, height and format from the header alone; 415 for bytes that are no picture, 413 for a picture of
    more than `max_pixels`."""
    if not data:
        raise ServiceError(422, f"{name}: empty file")
    try:
        # Pillow reads the header here and decodes nothing until asked; its own bomb check is ours to make.
        with Image.open(io.BytesIO(data)) as picture:
            width, height, kind = picture.width, picture.height, picture.format or "?"
    except Image.DecompressionBombError:  # a header claiming hundreds of megapixels
        width, height, kind = 0, 0, "huge"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ServiceError(415, f"{name}: not a picture (JPEG, PNG, WebP, BMP, TIFF or GIF)") from None
    if kind == "huge" or width * height > max_pixels:
        claimed = f"{width}x{height} is {width * height / 1e6:.1f} megapixels" if width else "its header claims"
        raise ServiceError(413, f"{name}: {claimed}, more than this server takes ({max_pixels / 1e6:g} megapixels, "
                                f"--max-megapixels)")
    return width, height, kind


def read_picture(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The picture as the scripts decode it (8-bit BGR, turned by its EXIF orientation); 413, 415 or 422 with one
    line when it is too large, no picture, or damaged."""
    _, _, kind = picture_size(data, name, max_pixels)
    if kind == "JPEG" and data.rfind(_JPEG_END) < data.find(_JPEG_START_OF_SCAN):
        raise ServiceError(422, f"{name}: the JPEG is cut short (no end marker after its image data)")
    try:
        return decode_picture(data, name)
    except FrcnnError as error:
        raise ServiceError(422, str(error)) from None
