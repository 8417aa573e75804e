"""Running a built model: runtime choice, ONNX export and its cache, OpenVINO / ONNX Runtime, int8 quantization."""
