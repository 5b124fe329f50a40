"""Use a found network: whole-image inference and the `predict` command/API.

`predictor` loads a run folder's networks (`choice`: which finalist, `inputs`: the files and drift time a user
gives); the tiling it uses lives in `popnas_seg.imaging` (plain numpy).
"""
