"""popnas-seg: progressive Pareto NAS for small, accurate, analog-robust segmentation networks.

Importing the package is cheap on purpose (no TensorFlow, no torch): the CLI validates a config
before any heavy library loads. See docs/ARCHITECTURE.md for the module map.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("popnas-seg")
except PackageNotFoundError:  # running from a source checkout without `pip install -e .`
    __version__ = "0+unknown"

__all__ = ["__version__"]
