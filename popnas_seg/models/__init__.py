"""Networks from cell encodings: plan.py (the Keras-free layer graph), cost.py (exact params/FLOPs from that
plan, no Keras import) and builder.py (the Keras model). Import the module you need: this package file imports
nothing, so counting params never pulls in TensorFlow."""
