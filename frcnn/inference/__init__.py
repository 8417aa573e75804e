"""Pictures in, detections out: the predictor, sliced inference, tracking and line counting."""
