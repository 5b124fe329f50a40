"""Analog and data studies: drift and HWA, noise sources, drift compensation, normalisation, input outliers."""
