"""Use a found network: tiled whole-image inference, evaluation, and the `predict` command/API.

`tiling` is plain numpy (safe to import in the analog worker); `predictor` loads a run folder's networks.
"""
