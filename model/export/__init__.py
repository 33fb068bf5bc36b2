"""What leaves the model side: the QuantizedModel data structure, the bundle files that hold it, and ONNX graphs."""
