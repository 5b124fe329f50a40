"""Analog side: Keras -> ONNX -> torch export, AIHWKit configs and conversion, probe and drift scoring."""
