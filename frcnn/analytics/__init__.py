"""What is measured on tracked objects in video: lines, zones and dwell, speed, a heatmap, one crop per track, the
events log and the summary. Per source and per model; fed by the video pipeline, which owns the frames."""
