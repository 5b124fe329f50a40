"""Whole-image tiling and segmentation scores (numpy only): the floor that training, analog and inference share."""
