"""Scoring detections against COCO-format ground truth: the one scorer evaluate.py and training share."""
