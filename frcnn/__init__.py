"""Faster R-CNN v1/v2 detection: the layers below the entry scripts."""
