"""Models for other runtimes: ONNX (with the search inside the graph) and Core ML."""
