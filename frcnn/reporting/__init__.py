"""Where one run beats another, in pictures: precision-recall curves, AP per class and per object size, the COCO
error analysis, a confusion matrix, a gallery of the pictures where two runs differ most, and `report.html` with
all of them. Read from the results `evaluate.py` keeps, so a finished run is plotted without running a model."""
