"""The analog stack really runs: aihwkit's compiled extension matches the installed torch.

With a wrong torch, aihwkit either fails to import (torch 2.9) or imports and then fails in the first
forward pass (torch 2.13+: "weights must be a CPU tensor"); see shared/STACK.md. So import alone is not
enough: build one analog layer of each kind and run it.
"""

from __future__ import annotations

import torch


def test_torch_is_the_version_aihwkit_was_built_against() -> None:
    assert torch.__version__.split("+")[0] == "2.10.0"


def test_analog_linear_and_conv_forward() -> None:
    from aihwkit.nn import AnalogConv2d, AnalogLinear
    from aihwkit.simulator.configs import InferenceRPUConfig

    torch.manual_seed(0)
    linear = AnalogLinear(6, 3, bias=True, rpu_config=InferenceRPUConfig())
    conv = AnalogConv2d(2, 4, kernel_size=3, padding=1, bias=True, rpu_config=InferenceRPUConfig())

    y = linear(torch.randn(5, 6))
    assert y.shape == (5, 3)
    assert torch.isfinite(y).all()

    z = conv(torch.randn(2, 2, 8, 8))
    assert z.shape == (2, 4, 8, 8)
    assert torch.isfinite(z).all()
    assert z.abs().sum() > 0, "an analog tile that outputs only zeros is not working"

    # inference-time analog behaviour: programming noise + drift, in eval mode
    conv.eval()
    conv.program_analog_weights()
    conv.drift_analog_weights(86400.0)
    with torch.no_grad():
        drifted = conv(torch.randn(1, 2, 8, 8))
    assert drifted.shape == (1, 4, 8, 8) and torch.isfinite(drifted).all()
