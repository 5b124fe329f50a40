"""popnas-seg: progressive Pareto NAS for small, accurate, analog-robust segmentation networks.

Importing the package is cheap on purpose (no TensorFlow, no torch): the CLI validates a config
before any heavy library loads. See docs/ARCHITECTURE.md for the module map.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# TensorFlow 2.21's oneDNN CPU kernels crash the process (SIGSEGV / "double free") while training some child
# networks at 64x64 (reproduced with the cell [(-2,3x3 conv,-1,identity)] and configs/run.json); the stock
# Eigen kernels do not. This must be set before TensorFlow is imported, so it lives in the package root.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from popnas_seg.quiet import quiet_third_party  # noqa: E402  (TF's C++ log level too must precede its import)

quiet_third_party()

try:
    __version__ = version("popnas-seg")
except PackageNotFoundError:  # running from a source checkout without `pip install -e .`
    __version__ = "0+unknown"


def predict(*args: object, **kwargs: object) -> list:
    """Segment images with a run's finalist: see `popnas_seg.inference.predictor.predict` (imported lazily, so
    `import popnas_seg` stays cheap)."""
    from popnas_seg.inference.predictor import predict as _predict

    return _predict(*args, **kwargs)  # type: ignore[arg-type]


__all__ = ["__version__", "predict"]
