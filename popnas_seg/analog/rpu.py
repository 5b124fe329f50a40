"""AIHWKit configurations from `AnalogConfig`, the layer-by-layer analog conversion, and its coverage.

Why convert layer by layer instead of `aihwkit.nn.conversion.convert_to_analog(root)`: on an onnx2torch
GraphModule that works once per process (a second network fails because a dynamically made wrapper class
is reused, STACK.md), and it aborts on the first grouped convolution (`Only one group is supported`). Here
every `nn.Conv2d` with `groups == 1` (and zero padding mode) and every `nn.Linear` is replaced in place by its
analog counterpart; everything else stays digital and is *listed* by `analog_coverage`, so every network
converts and no digital fallback goes unreported.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from popnas_seg.config import AnalogConfig


def _noise_model(cfg: AnalogConfig) -> Any:
    """The device's programming/read noise and drift (`analog.device`): the one place a device model is chosen.

    "pcm": PCMLikeNoiseModel (IBM's PCM characterisation, the default every recorded number used);
    "reram_wan2022": ReRamWan2022NoiseModel (ReRAM programming noise and decay, Wan et al., Nature 2022);
    "reram_cmo": ReRamCMONoiseModel (a single-device CMO/HfOx ReRAM). Each at `g_max` microsiemens."""
    from aihwkit.inference import PCMLikeNoiseModel, ReRamCMONoiseModel, ReRamWan2022NoiseModel

    models = {"pcm": PCMLikeNoiseModel, "reram_wan2022": ReRamWan2022NoiseModel, "reram_cmo": ReRamCMONoiseModel}
    return models[cfg.device](g_max=float(cfg.g_max))


def _drift_compensation(cfg: AnalogConfig) -> Any:
    """AIHWKit's global drift compensation: each tile's outputs scaled by one factor read with an all-ones
    input. AIHWKit's per-column compensation (one-hot reads) tied it on the issue-10 folder study and did worse
    on one layer, where each one-hot read sits within the output noise (benchmarks/studies/bench_drift_compensation.py,
    docs/benchmarks_log.md), so it is not offered."""
    from aihwkit.inference import GlobalDriftCompensation

    return GlobalDriftCompensation() if cfg.drift_compensation == "global" else None


def _set_forward(rpu: Any, cfg: AnalogConfig) -> None:
    from aihwkit.simulator.configs import WeightNoiseType

    rpu.forward.inp_res = float(cfg.inp_res)
    rpu.forward.out_res = float(cfg.out_res)
    rpu.forward.out_noise = float(cfg.out_noise)
    rpu.forward.w_noise = float(cfg.w_noise)
    rpu.forward.w_noise_type = WeightNoiseType.PCM_READ if cfg.w_noise > 0 else WeightNoiseType.NONE


def _set_mapping(rpu: Any, cfg: AnalogConfig) -> None:
    """Biases digital, tiles of at most `tile_size`, and each column's (layer's) weights mapped onto the full
    conductance range with a digital output scale (`weight_scaling`).

    Why the mapping: AIHWKit adds the output noise and the ADC steps in the tile's own weight units. A
    digitally trained layer whose weights peak at 0.17 then has outputs a few ADC steps wide and an output
    noise close to its signal; a real chip maps every column onto its conductance range. On the 48-image
    folder (seed 1, no HWA) this took the 13k-param cell from 0.715 to 0.912 at 1 year and the U-Net from
    0.808 to 0.953 (docs/benchmarks_log.md).
    """
    rpu.mapping.digital_bias = True
    rpu.mapping.max_input_size = int(cfg.tile_size)
    rpu.mapping.max_output_size = int(cfg.tile_size)
    if cfg.weight_scaling != "none":
        rpu.mapping.weight_scaling_omega = 1.0
        rpu.mapping.weight_scaling_columnwise = cfg.weight_scaling == "column"


TILES = ("torch", "compiled")
"""AIHWKit tile classes: "torch" (`TorchInferenceRPUConfig`, every run's scoring, probe and HWA) and "compiled"
(`InferenceRPUConfig`, the RPUCuda C++ tiles: kept for the equivalence benchmarks and for analog checkpoints
saved before the move)."""


def inference_rpu_config(cfg: AnalogConfig, tiles: str = "torch") -> Any:
    """Inference tiles for scoring a network: the search-time probe and the finalists' drift scoring.

    Programming/read noise and drift from the `analog.device` model (`_noise_model`; PCM-like by default) at
    `g_max`, optional global drift compensation, DAC/ADC resolution and output noise from `cfg`, each column's
    weights mapped onto the conductance range (`weight_scaling`, see `_set_mapping`) and clipped at `clip_sigma`
    standard deviations of the mapped layer, layers split over tiles of at most `tile_size` x `tile_size`, biases
    kept digital. Noise and bound management stay at AIHWKit's defaults (ABS_MAX / ITERATIVE): a digitally trained
    network has no learned input ranges, so dynamic input scaling is what keeps its activations inside the DAC
    range.

    Why AIHWKit's torch tiles (`TorchInferenceRPUConfig`) by default: the compiled tiles draw their forward
    (DAC/ADC, output) noise from a clock-seeded generator, so two scorings of one network under one seed
    differed (three probes by up to 0.0025 Dice, enough to change which children a search picks). The torch
    tiles draw every noise from torch's generator, so every analog score is repeatable from its seed; they
    cost the same or less here and score the same chip within the programmings' spread
    (benchmarks/speed/bench_probe_tiles.py, benchmarks/speed/bench_inference_tiles.py, docs/benchmarks_log.md).
    `tiles="compiled"` gives the same chip on the compiled tiles.
    """
    if tiles == "torch":
        from aihwkit.simulator.configs import TorchInferenceRPUConfig

        return _inference_settings(TorchInferenceRPUConfig(), cfg)
    if tiles == "compiled":
        from aihwkit.simulator.configs import InferenceRPUConfig

        return _inference_settings(InferenceRPUConfig(), cfg)
    raise ValueError(f"tiles must be one of {TILES}, got {tiles!r}")


def _inference_settings(rpu: Any, cfg: AnalogConfig) -> Any:
    """What both tile classes share: one place, so the probe and the drift scoring simulate the same chip."""
    from aihwkit.simulator.configs import WeightClipType

    rpu.noise_model = _noise_model(cfg)
    rpu.drift_compensation = _drift_compensation(cfg)
    _set_forward(rpu, cfg)
    rpu.clip.type = WeightClipType.LAYER_GAUSSIAN
    rpu.clip.sigma = float(cfg.clip_sigma)
    _set_mapping(rpu, cfg)
    return rpu


def hwa_rpu_config(cfg: AnalogConfig, tiles: str = "torch") -> Any:
    """The hardware-aware-training configuration: the inference tiles plus what HWA adds while training.

    Additive Gaussian weight noise (`hwa_noise_std`, relative to the layer's max weight; or relative to each
    weight with `hwa_noise_type` multiplicative, the form of drift's device-to-device spread) resampled every
    mini-batch, layer-Gaussian clipping at `clip_sigma` and symmetric remapping after every step, channel-wise
    with column weight scaling as in AIHWKit's StandardHWATrainingPreset, else layer-wise (ANALOG_FACTS.md
    section 4). Everything the forward pass sees at inference (PCM noise model, drift
    compensation, DAC/ADC resolution, output noise and bound, tile size, and ABS_MAX noise / ITERATIVE bound
    management) is *the same* as `inference_rpu_config`, so HWA changes only the weights and the Dice
    before and after it compare like with like.

    Why no learned input ranges (the AIHWKit tutorial's NM/BM NONE + `input_range`): HWA here starts from a
    digitally trained network and runs for one or a few epochs, i.e. a handful of mini-batches.
    `init_from_data` then sets every layer's static DAC range to 3 std of the first batch's activations,
    which clips the heavy-tailed activations of our networks, and nothing afterwards has time to learn it
    back. On a short-trained network (softmax outputs within 0.5 +- 0.08) that squashed the logits about
    4x, the first SGD steps then shifted every pixel to background, and analog Dice fell from 0.87 to
    0.000 after one epoch (logs/quick1, finalist 6). Dynamic input scaling, as at inference, needs no
    calibration and keeps that network at Dice 0.84-0.86 after HWA; on a well-trained one (digital Dice
    0.96) HWA now lifts 30-day analog Dice from 0.93 to 0.95, where the old recipe stayed at 0.93.
    """
    from aihwkit.simulator.configs import WeightModifierType, WeightRemapType

    rpu = inference_rpu_config(cfg, tiles)
    rpu.modifier.type = (
        WeightModifierType.MULT_NORMAL if cfg.hwa_noise_type == "multiplicative" else WeightModifierType.ADD_NORMAL
    )
    rpu.modifier.std_dev = float(cfg.hwa_noise_std)
    rpu.modifier.rel_to_actual_wmax = True
    # the remap after every step keeps the mapping of the converted network: per column or per layer
    rpu.remap.type = (
        WeightRemapType.CHANNELWISE_SYMMETRIC if cfg.weight_scaling == "column" else WeightRemapType.LAYERWISE_SYMMETRIC
    )
    return rpu


# ------------------------------------------------------------------------------------------ conversion


def _digital_reason(module: nn.Module) -> str | None:
    """Why a weighted layer stays digital (None: it converts)."""
    if type(module) is nn.Conv2d:
        if module.groups != 1:
            return f"grouped conv (groups={module.groups}): AIHWKit supports one group only"
        if module.padding_mode != "zeros":
            return f"padding_mode {module.padding_mode!r}: AIHWKit supports 'zeros' only"
        if isinstance(module.padding, str):
            return f"padding={module.padding!r}: AIHWKit needs explicit padding"
        return None
    if type(module) is nn.Linear:
        return None
    return f"{type(module).__name__} has no analog counterpart"


def _is_analog(module: nn.Module) -> bool:
    from aihwkit.nn.modules.base import AnalogLayerBase

    return isinstance(module, AnalogLayerBase)


def to_analog(torch_module: nn.Module, rpu_config: Any) -> nn.Module:
    """A deep copy of `torch_module` whose groups==1 Conv2d and Linear layers are AIHWKit analog layers.

    Weights and biases are copied (biases stay digital). Other layers stay as they are; see
    `analog_coverage` for which. The copy is in eval mode.
    """
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    module = copy.deepcopy(torch_module)
    targets = [
        (name, child)
        for name, child in module.named_modules()
        if name and type(child) in (nn.Conv2d, nn.Linear) and _digital_reason(child) is None
    ]
    for name, child in targets:
        parent, attr = _parent_of(module, name)
        if type(child) is nn.Conv2d:
            analog = AnalogConv2d.from_digital(child, rpu_config)
        else:
            analog = AnalogLinear.from_digital(child, rpu_config)
        parent._modules[attr] = analog
    apply_clipping(module)
    module.eval()
    return module


def apply_clipping(module: nn.Module) -> None:
    """Clip (and, where configured, remap) every analog tile's weights once, as after a training step.

    AIHWKit clips only in `post_update_step`, i.e. after an optimiser step: a digitally trained network
    converted for inference was therefore programmed unclipped and `clip_sigma` had no effect on it.
    """
    with torch.no_grad():
        for _, layer in analog_layers(module):
            for tile in layer.analog_tiles():
                tile.post_update_step()


def _parent_of(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Parent module and attribute of a dotted child name. onnx2torch names may contain '/' but not '.'
    inside one level, so a dot always separates levels (a name missing from `_modules` means it does not)."""
    if name in root._modules:
        return root, name
    head, _, tail = name.partition(".")
    child = root._modules.get(head)
    if child is not None:
        return _parent_of(child, tail)
    raise KeyError(name)


def analog_layers(module: nn.Module) -> Iterator[tuple[str, Any]]:
    """Top-level analog layers of a (partly) analog module (nested analog containers yield once).

    Typed Any: AIHWKit's analog layer mixin (analog_tiles, program_analog_weights, ...) has no type information."""
    seen: list[str] = []
    for name, child in module.named_modules():
        if _is_analog(child) and not any(name.startswith(p + ".") for p in seen):
            seen.append(name)
            yield name, child


def program_and_drift(module: nn.Module, t_inference: float) -> None:
    """Fresh programming noise, then drift to `t_inference` seconds (read noise resampled), every analog layer.

    Programming per call is what makes repetitions independent devices rather than re-reads of one chip.
    """
    module.eval()
    for _, layer in analog_layers(module):
        layer.program_analog_weights()
    for _, layer in analog_layers(module):
        layer.drift_analog_weights(float(t_inference))


# ------------------------------------------------------------------------------------------ coverage


def _weight_count(module: nn.Module) -> int:
    if _is_analog(module):
        analog: Any = module  # an AIHWKit analog layer (untyped)
        weight, _ = analog.get_weights()
        return int(weight.numel())
    weight = getattr(module, "weight", None)
    return int(weight.numel()) if isinstance(weight, torch.Tensor) else 0


def _macs(module: Any, inputs: tuple, output: Any) -> int:
    """Multiply-accumulates of one forward call of a conv / linear layer, per image.

    `module` is any torch or AIHWKit layer, read by duck-typed attributes (kernel_size, in_channels, ...)."""
    out = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(out, torch.Tensor) or out.dim() == 0:
        return 0
    batch = max(1, int(out.shape[0]))
    if hasattr(module, "kernel_size") and hasattr(module, "in_channels"):
        kernel = 1
        for k in module.kernel_size:
            kernel *= int(k)
        groups = int(getattr(module, "groups", 1) or 1)
        if isinstance(module, nn.ConvTranspose2d) or "Transpose" in type(module).__name__:
            x = inputs[0]
            return int(x.numel() // batch) * int(module.out_channels) // groups * kernel
        return int(out.numel() // batch) * int(module.in_channels) // groups * kernel
    if hasattr(module, "in_features"):
        return int(out.numel() // batch) * int(module.in_features)
    return 0


def analog_coverage(torch_module: nn.Module, sample: Any | None = None) -> dict[str, Any]:
    """How much of a converted network really runs on analog tiles.

    Returns `weights_analog_fraction` (weight-matrix elements in analog layers / all weight-matrix
    elements; biases and norms excluded: they are digital by design), `macs_analog_fraction` (same for
    multiply-accumulates, from forward hooks on `sample`, an NHWC batch; None without a sample),
    `analog_layers` (names) and `digital_layers` (name, type, weights, reason for each weighted layer that
    stayed digital; also weight tensors used by ops such as MatMul that are not layers at all).
    """
    analog: list[tuple[str, nn.Module]] = list(analog_layers(torch_module))
    analog_names = {n for n, _ in analog}
    inside_analog = tuple(n + "." for n in analog_names)
    digital: list[dict[str, Any]] = []
    digital_modules: list[tuple[str, nn.Module]] = []
    for name, child in torch_module.named_modules():
        if not name or name in analog_names or name.startswith(inside_analog):
            continue
        weight = child._parameters.get("weight")
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
            digital_modules.append((name, child))
            digital.append(
                {
                    "name": name,
                    "type": type(child).__name__,
                    "weights": int(weight.numel()),
                    "reason": _digital_reason(child) or "not converted",
                }
            )
            continue
        # Loose >=2-D float tensors (e.g. onnx2torch initializers feeding MatMul): digital weights too.
        for tensor_name, tensor in [*child._parameters.items(), *child._buffers.items()]:
            matrix = isinstance(tensor, torch.Tensor) and sum(int(d) > 1 for d in tensor.shape) >= 2
            if matrix and tensor.is_floating_point():  # per-channel scales (folded norms) are not weights
                digital.append(
                    {
                        "name": f"{name}.{tensor_name}",
                        "type": "tensor",
                        "weights": int(tensor.numel()),
                        "reason": "weight tensor used by a non-layer op (e.g. MatMul)",
                    }
                )
    analog_w = sum(_weight_count(m) for _, m in analog)
    digital_w = sum(d["weights"] for d in digital)
    total_w = analog_w + digital_w
    result: dict[str, Any] = {
        "weights_analog_fraction": (analog_w / total_w) if total_w else 0.0,
        "weights_analog": int(analog_w),
        "weights_total": int(total_w),
        "macs_analog_fraction": None,
        "analog_layers": sorted(analog_names),
        "digital_layers": digital,
    }
    if sample is not None:
        result.update(_mac_fractions(torch_module, analog, digital_modules, sample))
    return result


def _mac_fractions(root: nn.Module, analog: list, digital: list, sample: Any) -> dict[str, Any]:
    counts = {"analog": 0, "digital": 0}
    handles = []

    def hook(kind: str):
        def fn(module: nn.Module, inputs: tuple, output: Any) -> None:
            counts[kind] += _macs(module, inputs, output)

        return fn

    for _, m in analog:
        handles.append(m.register_forward_hook(hook("analog")))
    for _, m in digital:
        handles.append(m.register_forward_hook(hook("digital")))
    was_training = root.training
    root.eval()
    try:
        with torch.no_grad():
            x = torch.as_tensor(sample, dtype=torch.float32)[:1]
            root(x)
    finally:
        for h in handles:
            h.remove()
        root.train(was_training)
    total = counts["analog"] + counts["digital"]
    return {
        "macs_analog_fraction": (counts["analog"] / total) if total else 0.0,
        "macs_analog": int(counts["analog"]),
        "macs_total": int(total),
    }


def analog_device(tiles: str = "torch") -> str:
    """ "cuda" when torch sees a GPU and the `tiles` can run there, else "cpu". Call it in the analog worker only.

    AIHWKit's torch tiles (every run's) are plain PyTorch and run wherever torch does. Its compiled tiles need
    AIHWKit built with CUDA as well: a CUDA torch with CPU-only compiled tiles (the PyPI wheel, STACK.md)
    raises CudaError on `.cuda()` of an analog layer (ANALOG_FACTS.md 5). Same rule as `devices.device_plan`.
    """
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    if tiles == "torch":
        return "cuda"
    try:
        from aihwkit.simulator.rpu_base import cuda as rpu_cuda

        return "cuda" if rpu_cuda.is_compiled() else "cpu"
    except (ImportError, AttributeError):
        return "cpu"
