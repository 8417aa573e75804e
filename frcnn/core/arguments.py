"""Checked command-line values (argparse types): numbers, fractions, sizes, seconds, device names. A bad value
is argparse's one-line usage error. Nothing here imports PyTorch."""

from __future__ import annotations

import argparse


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def overlap_ratio(text: str) -> float:
    """A number in [0, 1)."""
    value = fraction(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be below 1 (tiles that overlap entirely never advance)")
    return value


def whole(text: str, least: int, must: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text} must be {must}")
    return value


def positive_int(text: str) -> int:
    return whole(text, 1, "at least 1")


def non_negative_int(text: str) -> int:
    return whole(text, 0, "0 or more")


def backbone_layers(text: str) -> int:
    """How many of the backbone's five stages are trained: 0 to 5."""
    value = whole(text, 0, "between 0 and 5")
    if value > 5:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 5")
    return value


def positive_number(text: str) -> float:
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def non_negative_number(text: str) -> float:
    value = number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def seconds_up_to_an_hour(text: str) -> float:
    """A number of seconds in [0, 3600]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def device_name(text: str) -> str:
    """auto, cpu, mps, cuda or cuda:N (whether it exists here is checked when the model loads)."""
    name = text.strip().lower()
    if name in ("auto", "cpu", "mps", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise argparse.ArgumentTypeError(f"unknown device '{text}' (use auto, cpu, cuda, cuda:N or mps)")


def imgsz(text: str) -> int:
    """A picture size in pixels: a whole number of at least 32."""
    value = positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"{text} is too small (at least 32)")
    return value


def slice_size(text: str) -> int:
    """A tile side in pixels (at least 32), or 'auto' (0): chosen from each picture's size."""
    if text.strip().lower() == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a tile size (whole pixels, or auto)") from None
    if value < 32:
        raise argparse.ArgumentTypeError(f"{text} is not a tile size: at least 32 pixels (or auto)")
    return value
