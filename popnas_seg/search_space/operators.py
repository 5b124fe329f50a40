"""Operator grammar and the layer-level description every operator lowers to.

One regex table (`_FORMS`) is the whole grammar; `parse_operator` turns a string such as `"3x3:2dr conv"`
into a frozen `OperatorSpec`. An operator never creates Keras layers itself: `emit_operator` writes the
primitive layers it needs into a `LayerGraph` (plain data: kind, attributes, output shape, params, FLOPs).
The parameter counter (models/cost.py) sums that graph and the model builder (models/builder.py) turns the
very same graph into Keras layers, so the two can never disagree about the adaptation rules below.

Adaptation rules (POPNAS's, adjusted where an op would not convert to PyTorch). An operator receives a
tensor with `c_in` channels at `stride` (1, 2, 4, ...) times the target resolution and must return `filters`
channels at the target resolution:

- `identity`: pass-through when `stride == 1` and `c_in == filters`; otherwise the *adapter*, a
  1x1 conv (stride `stride`) -> BN -> swish.
- `kxk conv`, `axb-cxd conv` (first conv strided), `kxk dconv`: the conv itself takes the stride.
- dilated convs (`kxk:Ndr conv|dconv`) and `kxk tconv` cannot stride (Keras forbids dilation with stride;
  a strided transpose conv would upsample): they run at the input resolution, then a `stride`x`stride`
  max-pool reduces (POPNAS does the same for dilated convs).
- `kxk maxpool|avgpool`: the pool takes the stride; a 1x1 conv -> BN -> swish follows when
  `c_in != filters`.
- `Nr SE`: the adapter first (when needed), then squeeze-and-excitation on `filters` channels.
- `kxk:Zz zconv`: avg-pool by `stride * z`, conv, bilinear upsample by `z`. `z` is lowered to the largest
  factor <= Z that divides both target sides (1: a plain conv), so a zoomed conv works at any resolution.

Conversion-driven choices (see shared/STACK.md; tests/test_export_equivalence.py proves each):
- avg pools pad explicitly with zeros (`ZeroPadding2D` + 'valid' pool, borders count the padding, as
  PyTorch's `count_include_pad=True`): onnx2torch rejects Keras 'same' average pooling whenever its padding
  is asymmetric (even kernels, or stride 2).
- transpose convs with an even kernel side are 'valid' then cropped back to the input size: onnx2torch
  rejects asymmetric ConvTranspose padding; odd kernels use 'same' (symmetric padding converts).
- SE excitation uses 1x1 convs with bias instead of Dense, so aihwkit maps them to analog tiles
  (a Dense on a 4-D tensor exports as MatMul, which stays digital).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Kernel = tuple[int, int]

KINDS = ("identity", "conv", "stacked_conv", "dconv", "maxpool", "avgpool", "tconv", "se", "zconv")
WEIGHTLESS_KINDS = frozenset({"identity", "maxpool", "avgpool"})


@dataclass(frozen=True)
class OperatorSpec:
    """A parsed operator. `kernel2` only for stacked convs, `dilation` > 1 only for dilated convs."""

    kind: str
    kernel: Kernel | None = None
    kernel2: Kernel | None = None
    dilation: int = 1
    ratio: int | None = None
    zoom: int | None = None
    text: str = ""

    @property
    def has_weights(self) -> bool:
        """True when the operator itself learns weights (ignoring shape adaptation)."""
        return self.kind not in WEIGHTLESS_KINDS

    def params(self, c_in: int, filters: int, stride: int = 1) -> int:
        """Weights (trainable + BN statistics, as Keras `count_params`) for this shape adaptation."""
        side = 4 * stride  # any side divisible by the stride; params do not depend on it
        return _lowered_cost(self, Shape(side, side, c_in), filters, stride)[0]

    def flops(self, c_in: int, filters: int, spatial: tuple[int, int], stride: int = 1) -> int:
        """2 x multiply-adds of its conv layers on an input of `spatial` (H, W) at `stride` x target."""
        return _lowered_cost(self, Shape(spatial[0], spatial[1], c_in), filters, stride)[1]

    def __str__(self) -> str:
        return self.text


def _kernel(a: str, b: str) -> Kernel:
    return int(a), int(b)


# The grammar: (regex, kind, field extractor, human form). "@" in a form means a positive integer.
_FORMS: tuple[tuple[re.Pattern[str], str, Callable[[re.Match[str]], dict[str, Any]], str], ...] = (
    (re.compile(r"identity"), "identity", lambda m: {}, "identity"),
    (re.compile(r"(\d+)x(\d+) conv"), "conv", lambda m: {"kernel": _kernel(m[1], m[2])}, "@x@ conv"),
    (
        re.compile(r"(\d+)x(\d+):(\d+)dr conv"),
        "conv",
        lambda m: {"kernel": _kernel(m[1], m[2]), "dilation": int(m[3])},
        "@x@:@dr conv",
    ),
    (
        re.compile(r"(\d+)x(\d+)-(\d+)x(\d+) conv"),
        "stacked_conv",
        lambda m: {"kernel": _kernel(m[1], m[2]), "kernel2": _kernel(m[3], m[4])},
        "@x@-@x@ conv",
    ),
    (re.compile(r"(\d+)x(\d+) dconv"), "dconv", lambda m: {"kernel": _kernel(m[1], m[2])}, "@x@ dconv"),
    (
        re.compile(r"(\d+)x(\d+):(\d+)dr dconv"),
        "dconv",
        lambda m: {"kernel": _kernel(m[1], m[2]), "dilation": int(m[3])},
        "@x@:@dr dconv",
    ),
    (re.compile(r"(\d+)x(\d+) maxpool"), "maxpool", lambda m: {"kernel": _kernel(m[1], m[2])}, "@x@ maxpool"),
    (re.compile(r"(\d+)x(\d+) avgpool"), "avgpool", lambda m: {"kernel": _kernel(m[1], m[2])}, "@x@ avgpool"),
    (re.compile(r"(\d+)x(\d+) tconv"), "tconv", lambda m: {"kernel": _kernel(m[1], m[2])}, "@x@ tconv"),
    (re.compile(r"(\d+)r SE"), "se", lambda m: {"ratio": int(m[1])}, "@r SE"),
    (
        re.compile(r"(\d+)x(\d+):(\d+)z zconv"),
        "zconv",
        lambda m: {"kernel": _kernel(m[1], m[2]), "zoom": int(m[3])},
        "@x@:@z zconv",
    ),
)
KNOWN_FORMS = ", ".join(f'"{form}"' for *_, form in _FORMS) + ' ("@" is a positive integer)'
_WORDS = {"identity", "conv", "dconv", "maxpool", "avgpool", "tconv", "SE", "zconv"}


def parse_operator(text: str) -> OperatorSpec:
    """Parse one operator string; raise ValueError naming the problem and the known forms."""
    if not isinstance(text, str):
        raise ValueError(f"operator must be a string, got {type(text).__name__}")
    fail = f'cannot parse "{text}"'
    if text != text.strip() or "  " in text:
        raise ValueError(f'{fail}: remove the extra spaces (write e.g. "3x3 conv"); known forms: {KNOWN_FORMS}')
    if re.search(r"(?<!\d)0\d", text):
        raise ValueError(f"{fail}: numbers must not have leading zeros")
    for pattern, kind, extract, _form in _FORMS:
        match = pattern.fullmatch(text)
        if match:
            spec = OperatorSpec(kind=kind, text=text, **extract(match))
            _check_values(spec, fail)
            return spec
    word = text.rsplit(" ", 1)[-1] if text else ""
    if word not in _WORDS:
        if word.lower() in {w.lower() for w in _WORDS}:
            raise ValueError(f'{fail}: operator names are case-sensitive ("{word}"); known forms: {KNOWN_FORMS}')
        raise ValueError(f'{fail}: unknown operator "{word}"; known forms: {KNOWN_FORMS}')
    forms = [f'"{form}"' for *_, form in _FORMS if form.rsplit(" ", 1)[-1] == word]
    raise ValueError(f'{fail}: {word} must be written as {" or ".join(forms)} ("@" is a positive integer)')


def _check_values(spec: OperatorSpec, fail: str) -> None:
    for k in (spec.kernel, spec.kernel2):
        if k is not None and min(k) < 1:
            raise ValueError(f"{fail}: kernel sizes must be at least 1")
    if spec.text.endswith(("dr conv", "dr dconv")) and spec.dilation < 2:
        raise ValueError(f'{fail}: dilation must be at least 2 (omit ":1dr" for an undilated conv)')
    if spec.ratio is not None and spec.ratio < 1:
        raise ValueError(f"{fail}: the SE reduction ratio must be at least 1")
    if spec.zoom is not None and spec.zoom < 2:
        raise ValueError(f"{fail}: the zoom factor must be at least 2 (use a plain conv for zoom 1)")


# ----------------------------------------------------------------------------------------------------
# Layer graph: the plain-data network description shared by the cost counter and the Keras builder.


class Shape(NamedTuple):
    h: int
    w: int
    c: int


@dataclass(frozen=True)
class LayerNode:
    """One primitive layer. `attrs` are exactly what the Keras builder needs; `inputs` index earlier nodes."""

    kind: str
    inputs: tuple[int, ...]
    shape: Shape
    params: int
    flops: int
    name: str
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)


class LayerGraph:
    """An append-only DAG of `LayerNode`s (indices are topological) with one method per primitive layer.

    Shapes are computed as Keras computes them, params as Keras counts them (BatchNorm: 4 per channel,
    gamma, beta, moving mean and variance) and FLOPs as 2 x multiply-adds of conv layers (see
    models/cost.py); only nodes that reach the output are counted or built.
    """

    def __init__(self) -> None:
        self.nodes: list[LayerNode] = []
        self.scope = "net"

    # -- bookkeeping -------------------------------------------------------------------------------
    def _add(
        self, kind: str, inputs: tuple[int, ...], shape: Shape, params: int = 0, flops: int = 0, **attrs: Any
    ) -> int:
        index = len(self.nodes)
        name = f"{self.scope}_{kind}{index}"
        self.nodes.append(LayerNode(kind, inputs, Shape(*shape), int(params), int(flops), name, attrs))
        return index

    def shape(self, x: int) -> Shape:
        return self.nodes[x].shape

    def ancestors(self, output: int) -> list[int]:
        """Indices of the nodes `output` depends on (itself included), in topological order."""
        seen = {output}
        stack = [output]
        while stack:
            for i in self.nodes[stack.pop()].inputs:
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return sorted(seen)

    def total_params(self, output: int) -> int:
        return sum(self.nodes[i].params for i in self.ancestors(output))

    def total_flops(self, output: int) -> int:
        return sum(self.nodes[i].flops for i in self.ancestors(output))

    # -- primitive layers --------------------------------------------------------------------------
    def input(self, shape: Shape) -> int:
        return self._add("input", (), shape)

    def conv(
        self, x: int, filters: int, kernel: Kernel, strides: int = 1, dilation: int = 1, use_bias: bool = False
    ) -> int:
        """Conv2D 'same'."""
        s = self.shape(x)
        out = Shape(-(-s.h // strides), -(-s.w // strides), filters)
        macs = out.h * out.w * kernel[0] * kernel[1] * s.c * filters
        params = kernel[0] * kernel[1] * s.c * filters + (filters if use_bias else 0)
        return self._add(
            "conv",
            (x,),
            out,
            params,
            2 * macs,
            filters=filters,
            kernel=kernel,
            strides=strides,
            dilation=dilation,
            use_bias=use_bias,
        )

    def separable_conv(self, x: int, filters: int, kernel: Kernel, strides: int = 1, dilation: int = 1) -> int:
        """SeparableConv2D 'same' without bias: depthwise k x k per channel, then pointwise 1x1."""
        s = self.shape(x)
        out = Shape(-(-s.h // strides), -(-s.w // strides), filters)
        macs = out.h * out.w * (kernel[0] * kernel[1] * s.c + s.c * filters)
        params = kernel[0] * kernel[1] * s.c + s.c * filters
        return self._add(
            "separable_conv",
            (x,),
            out,
            params,
            2 * macs,
            filters=filters,
            kernel=kernel,
            strides=strides,
            dilation=dilation,
        )

    def conv_transpose(
        self, x: int, filters: int, kernel: Kernel, strides: int, padding: str, use_bias: bool = False
    ) -> int:
        """Conv2DTranspose; 'valid' gives (H-1)*s+k, 'same' gives H*s."""
        s = self.shape(x)
        if padding == "same":
            out = Shape(s.h * strides, s.w * strides, filters)
        else:
            out = Shape((s.h - 1) * strides + kernel[0], (s.w - 1) * strides + kernel[1], filters)
        macs = s.h * s.w * kernel[0] * kernel[1] * s.c * filters
        params = kernel[0] * kernel[1] * s.c * filters + (filters if use_bias else 0)
        return self._add(
            "conv_transpose",
            (x,),
            out,
            params,
            2 * macs,
            filters=filters,
            kernel=kernel,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
        )

    def batch_norm(self, x: int) -> int:
        return self._add("batch_norm", (x,), self.shape(x), 4 * self.shape(x).c)

    def activation(self, x: int, function: str, dtype: str | None = None) -> int:
        return self._add("activation", (x,), self.shape(x), function=function, dtype=dtype)

    def max_pool(self, x: int, pool: Kernel, strides: int) -> int:
        """MaxPooling2D 'same' (its asymmetric padding converts to PyTorch)."""
        s = self.shape(x)
        return self._add(
            "max_pool", (x,), Shape(-(-s.h // strides), -(-s.w // strides), s.c), pool=pool, strides=strides
        )

    def avg_pool(self, x: int, pool: Kernel, strides: int) -> int:
        """Average pool with TF 'same' output size, zero-padded explicitly (see module docstring)."""
        s = self.shape(x)
        pads = []
        for size, k in ((s.h, pool[0]), (s.w, pool[1])):
            size_out = -(-size // strides)
            total = max((size_out - 1) * strides + k - size, 0)
            pads.append((total // 2, total - total // 2))
        if any(p for pair in pads for p in pair):
            x = self._add("zero_pad", (x,), Shape(s.h + sum(pads[0]), s.w + sum(pads[1]), s.c), padding=tuple(pads))
        padded = self.shape(x)
        out = Shape((padded.h - pool[0]) // strides + 1, (padded.w - pool[1]) // strides + 1, s.c)
        return self._add("avg_pool", (x,), out, pool=pool, strides=strides)

    def crop(self, x: int, cropping: tuple[tuple[int, int], tuple[int, int]]) -> int:
        s = self.shape(x)
        out = Shape(s.h - sum(cropping[0]), s.w - sum(cropping[1]), s.c)
        return self._add("crop", (x,), out, cropping=cropping)

    def global_avg_pool(self, x: int) -> int:
        return self._add("global_avg_pool", (x,), Shape(1, 1, self.shape(x).c))

    def upsample(self, x: int, factor: int) -> int:
        """UpSampling2D bilinear by an integer factor."""
        s = self.shape(x)
        return self._add("upsample", (x,), Shape(s.h * factor, s.w * factor, s.c), factor=factor)

    def add(self, xs: list[int]) -> int:
        return self._merge("add", xs)

    def average(self, xs: list[int]) -> int:
        return self._merge("average", xs)

    def multiply(self, xs: list[int]) -> int:
        """Elementwise product, broadcasting a [1, 1, C] gate over the first input."""
        return self._add("multiply", tuple(xs), self.shape(xs[0]))

    def concat(self, xs: list[int]) -> int:
        s = self.shape(xs[0])
        return self._add("concat", tuple(xs), Shape(s.h, s.w, sum(self.shape(x).c for x in xs)))

    def _merge(self, kind: str, xs: list[int]) -> int:
        shapes = {self.shape(x) for x in xs}
        if len(shapes) != 1:
            raise ValueError(f"{kind} of tensors with different shapes {sorted(shapes)}")
        return self._add(kind, tuple(xs), self.shape(xs[0]))

    # -- composites --------------------------------------------------------------------------------
    def conv_bn_act(
        self,
        x: int,
        filters: int,
        kernel: Kernel = (1, 1),
        strides: int = 1,
        dilation: int = 1,
        activation: str = "swish",
    ) -> int:
        """The POPNAS convolution unit: conv (no bias) -> BatchNorm -> activation."""
        y = self.conv(x, filters, kernel, strides, dilation)
        return self.activation(self.batch_norm(y), activation)


# ----------------------------------------------------------------------------------------------------
# Lowering: operator -> primitive layers, with the adaptation rules of the module docstring.


def emit_adapter(g: LayerGraph, x: int, filters: int, stride: int) -> int:
    """Identity with shape adaptation: pass-through if nothing changes, else 1x1 conv (stride) -> BN -> swish."""
    if stride == 1 and g.shape(x).c == filters:
        return x
    return g.conv_bn_act(x, filters, (1, 1), stride)


def zoom_factor(zoom: int, target_h: int, target_w: int) -> int:
    """Largest factor <= `zoom` dividing both target sides (so pooling and upsampling are exact)."""
    for z in range(min(zoom, target_h, target_w), 0, -1):
        if target_h % z == 0 and target_w % z == 0:
            return z
    return 1


def emit_operator(g: LayerGraph, spec: OperatorSpec, x: int, filters: int, stride: int) -> int:
    """Append the layers of `spec` applied to node `x`; return a node of `filters` channels at 1/`stride`."""
    s = g.shape(x)
    if stride < 1 or s.h % stride or s.w % stride:
        raise ValueError(f"cannot apply {spec.text!r} with stride {stride} to a {s.h}x{s.w} tensor")
    kind = spec.kind
    k: Kernel = spec.kernel or (1, 1)
    if kind == "identity":
        return emit_adapter(g, x, filters, stride)
    if kind == "conv":
        if spec.dilation == 1:
            return g.conv_bn_act(x, filters, k, stride)
        y = g.conv_bn_act(x, filters, k, 1, spec.dilation)
        return g.max_pool(y, (stride, stride), stride) if stride > 1 else y
    if kind == "stacked_conv":
        y = g.conv_bn_act(x, filters, k, stride)
        return g.conv_bn_act(y, filters, spec.kernel2 or (1, 1))
    if kind == "dconv":
        if spec.dilation == 1:
            y = g.separable_conv(x, filters, k, stride)
            return g.activation(g.batch_norm(y), "swish")
        y = g.separable_conv(x, filters, k, 1, spec.dilation)
        y = g.activation(g.batch_norm(y), "swish")
        return g.max_pool(y, (stride, stride), stride) if stride > 1 else y
    if kind in ("maxpool", "avgpool"):
        pool = g.max_pool if kind == "maxpool" else g.avg_pool
        y = pool(x, k, stride)
        return g.conv_bn_act(y, filters) if s.c != filters else y
    if kind == "tconv":
        kh, kw = k
        if kh % 2 and kw % 2:  # symmetric 'same' padding converts as is
            y = g.conv_transpose(x, filters, k, 1, "same")
        else:
            y = g.conv_transpose(x, filters, k, 1, "valid")
            y = g.crop(y, (((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)))
        y = g.activation(g.batch_norm(y), "swish")
        return g.max_pool(y, (stride, stride), stride) if stride > 1 else y
    if kind == "se":
        y = emit_adapter(g, x, filters, stride)
        hidden = max(1, filters // (spec.ratio or 1))
        gate = g.global_avg_pool(y)
        gate = g.activation(g.conv(gate, hidden, (1, 1), use_bias=True), "swish")
        gate = g.activation(g.conv(gate, filters, (1, 1), use_bias=True), "sigmoid")
        return g.multiply([y, gate])
    if kind == "zconv":
        z = zoom_factor(spec.zoom or 1, s.h // stride, s.w // stride)
        y = g.avg_pool(x, (stride * z, stride * z), stride * z) if stride * z > 1 else x
        y = g.conv_bn_act(y, filters, k)
        return g.upsample(y, z) if z > 1 else y
    raise ValueError(f"unknown operator kind {kind!r}")  # unreachable for parsed specs


def _lowered_cost(spec: OperatorSpec, shape: Shape, filters: int, stride: int) -> tuple[int, int]:
    g = LayerGraph()
    out = emit_operator(g, spec, g.input(shape), filters, stride)
    return g.total_params(out), g.total_flops(out)
