"""Keep known-harmless third-party noise off the terminal, unless asked for (`--verbose` or POPNAS_SEG_VERBOSE=1).

Newcomers read these lines as errors; none of them is about their run:

- TensorFlow's C++ log (absl): `E0000 ... NodeDef mentions attribute use_unbounded_threadpool` (tf.data's
  graph rewrite on TF 2.21, once per trained network), "All log messages before absl::InitializeLog()",
  cpu_feature_guard's "optimized to use available CPU instructions" and oneDNN notes. TF reads
  TF_CPP_MIN_LOG_LEVEL once, when it is imported: 3 keeps only FATAL (2 still lets the E0000 line through).
  Python errors are unaffected: they still raise, and the CLI still prints their one-line message.
- onnx2torch 1.5.15's UserWarning "Using a non-tuple sequence for multidimensional indexing is deprecated"
  (its Slice converter, seen in the export check of every finalist).

`quiet_third_party` runs when `popnas_seg` is imported, so the CLI, the Python API (`popnas_seg.predict`),
Ray workers and analog worker processes (which import the package) are all covered, before TensorFlow loads.
A TF_CPP_MIN_LOG_LEVEL the user set is left alone. `show_third_party` (the CLI's `--verbose`) undoes it and
exports POPNAS_SEG_VERBOSE=1 so child processes show everything too.
"""

from __future__ import annotations

import os
import sys
import warnings

VERBOSE_ENV = "POPNAS_SEG_VERBOSE"
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_LOG_LEVEL = "3"

# (message regex, category, module regex) of warnings that say nothing about the user's run.
HARMLESS_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"Using a non-tuple sequence for multidimensional indexing is deprecated", UserWarning, r"onnx2torch(\.|$)"),
)

_state = {"tf_level_set": False, "filters_added": False}


def wants_third_party_output() -> bool:
    """True when POPNAS_SEG_VERBOSE is set to anything but '', 0, false, no or off."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def quiet_third_party() -> None:
    """Hide the noise listed in the module docstring (a no-op with POPNAS_SEG_VERBOSE=1). Cheap: no imports."""
    if wants_third_party_output():
        return
    if TF_LOG_ENV not in os.environ:
        os.environ[TF_LOG_ENV] = QUIET_TF_LOG_LEVEL
        _state["tf_level_set"] = True
    if not _state["filters_added"]:
        for message, category, module in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        _state["filters_added"] = True


def show_third_party() -> None:
    """`--verbose`: show third-party logs and warnings again, here and in every child process started later."""
    os.environ[VERBOSE_ENV] = "1"
    if _state["tf_level_set"] and "tensorflow" not in sys.modules and os.environ.get(TF_LOG_ENV) == QUIET_TF_LOG_LEVEL:
        del os.environ[TF_LOG_ENV]
    _state["tf_level_set"] = False
    if _state["filters_added"]:
        ours = {(m, c, mod) for m, c, mod in HARMLESS_WARNINGS}
        kept = [
            f
            for f in warnings.filters
            if not (
                f[0] == "ignore"
                and f[1] is not None
                and f[3] is not None
                and (f[1].pattern, f[2], f[3].pattern) in ours
            )
        ]
        # typeshed declares warnings.filters a Sequence; at run time it is the module's list, edited in place
        warnings.filters[:] = kept  # type: ignore[index]
        getattr(warnings, "_filters_mutated", lambda: None)()  # drop cached "already ignored" decisions
        _state["filters_added"] = False
