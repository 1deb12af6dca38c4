"""Inference: a trained model (fold ensemble, final model or ONNX export) applied to new audio."""
