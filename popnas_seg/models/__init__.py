"""Keras networks built from cell encodings, and their exact cost from the encoding alone."""
from popnas_seg.models.builder import build_model, build_unet
from popnas_seg.models.cost import count_flops, count_params, unet_flops, unet_params

__all__ = ["build_model", "build_unet", "count_flops", "count_params", "unet_flops", "unet_params"]
