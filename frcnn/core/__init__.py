"""The bottom layer: value types (detections, predictions), frozen option values, the user-facing error, files."""
