"""Operator grammar, its error messages, and the per-operator cost rules."""

from __future__ import annotations

import pydantic
import pytest

from popnas_seg.config import SearchSpaceConfig
from popnas_seg.search_space.operators import (
    KNOWN_FORMS,
    LayerGraph,
    OperatorSpec,
    Shape,
    emit_operator,
    parse_operator,
    zoom_factor,
)

ALL_FORMS = [
    ("identity", OperatorSpec("identity", text="identity")),
    ("3x3 conv", OperatorSpec("conv", kernel=(3, 3), text="3x3 conv")),
    ("1x5 conv", OperatorSpec("conv", kernel=(1, 5), text="1x5 conv")),
    ("3x3:2dr conv", OperatorSpec("conv", kernel=(3, 3), dilation=2, text="3x3:2dr conv")),
    ("1x7-7x1 conv", OperatorSpec("stacked_conv", kernel=(1, 7), kernel2=(7, 1), text="1x7-7x1 conv")),
    ("3x3 dconv", OperatorSpec("dconv", kernel=(3, 3), text="3x3 dconv")),
    ("5x5:3dr dconv", OperatorSpec("dconv", kernel=(5, 5), dilation=3, text="5x5:3dr dconv")),
    ("2x2 maxpool", OperatorSpec("maxpool", kernel=(2, 2), text="2x2 maxpool")),
    ("3x3 avgpool", OperatorSpec("avgpool", kernel=(3, 3), text="3x3 avgpool")),
    ("2x2 tconv", OperatorSpec("tconv", kernel=(2, 2), text="2x2 tconv")),
    ("4r SE", OperatorSpec("se", ratio=4, text="4r SE")),
    ("3x3:2z zconv", OperatorSpec("zconv", kernel=(3, 3), zoom=2, text="3x3:2z zconv")),
]


@pytest.mark.parametrize("text,expected", ALL_FORMS)
def test_every_form_parses(text: str, expected: OperatorSpec) -> None:
    spec = parse_operator(text)
    assert spec == expected
    assert str(spec) == text


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("3x3 cnv", 'unknown operator "cnv"'),
        ("", 'unknown operator ""'),
        ("3x3", 'unknown operator "3x3"'),
        ("3x conv", '"@x@ conv" or "@x@:@dr conv" or "@x@-@x@ conv"'),
        ("3x3 SE", '"@r SE"'),
        ("0x3 conv", "kernel sizes must be at least 1"),
        ("3x3-3x0 conv", "kernel sizes must be at least 1"),
        ("0x0 maxpool", "kernel sizes must be at least 1"),
        ("3x3:1dr conv", "dilation must be at least 2"),
        ("3x3:0dr dconv", "dilation must be at least 2"),
        ("0r SE", "reduction ratio must be at least 1"),
        ("3x3:1z zconv", "zoom factor must be at least 2"),
        ("3x3 Conv", "case-sensitive"),
        ("2r se", "case-sensitive"),
        (" 3x3 conv", "extra spaces"),
        ("3x3  conv", "extra spaces"),
        ("03x3 conv", "leading zeros"),
    ],
)
def test_bad_strings_name_the_reason(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_operator(text)
    message = str(info.value)
    assert message.startswith(f'cannot parse "{text}"')
    assert fragment in message


def test_unknown_operator_lists_known_forms() -> None:
    with pytest.raises(ValueError, match="known forms") as info:
        parse_operator("3x3 cnv")
    assert KNOWN_FORMS in str(info.value)
    for form in ("identity", "@x@:@dr conv", "@x@-@x@ conv", "@r SE", "@x@:@z zconv", "@x@ tconv"):
        assert form in KNOWN_FORMS


def test_non_string_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_operator(3)  # type: ignore[arg-type]


def test_config_rejects_a_bad_operator_with_the_reason() -> None:
    with pytest.raises(pydantic.ValidationError, match='unknown operator "cnv"'):
        SearchSpaceConfig(operators=["identity", "3x3 cnv"])


def bn(c: int) -> int:
    return 4 * c


@pytest.mark.parametrize(
    "text,c_in,filters,stride,expected",
    [
        ("identity", 8, 8, 1, 0),
        ("identity", 4, 8, 1, 4 * 8 + bn(8)),
        ("identity", 8, 8, 2, 8 * 8 + bn(8)),
        ("3x3 conv", 4, 8, 1, 9 * 4 * 8 + bn(8)),
        ("3x3 conv", 4, 8, 2, 9 * 4 * 8 + bn(8)),
        ("3x3:2dr conv", 4, 8, 2, 9 * 4 * 8 + bn(8)),
        ("1x5-5x1 conv", 4, 8, 1, 5 * 4 * 8 + bn(8) + 5 * 8 * 8 + bn(8)),
        ("3x3 dconv", 4, 8, 1, 9 * 4 + 4 * 8 + bn(8)),
        ("3x3:2dr dconv", 4, 8, 2, 9 * 4 + 4 * 8 + bn(8)),
        ("2x2 maxpool", 8, 8, 2, 0),
        ("2x2 maxpool", 4, 8, 1, 4 * 8 + bn(8)),
        ("3x3 avgpool", 4, 8, 2, 4 * 8 + bn(8)),
        ("2x2 tconv", 4, 8, 1, 4 * 4 * 8 + bn(8)),
        ("3x3 tconv", 4, 8, 2, 9 * 4 * 8 + bn(8)),
        ("2r SE", 8, 8, 1, (8 * 4 + 4) + (4 * 8 + 8)),
        ("2r SE", 4, 8, 2, 4 * 8 + bn(8) + (8 * 4 + 4) + (4 * 8 + 8)),
        ("16r SE", 8, 8, 1, (8 * 1 + 1) + (1 * 8 + 8)),  # hidden units never drop below 1
        ("3x3:2z zconv", 4, 8, 2, 9 * 4 * 8 + bn(8)),
    ],
)
def test_params_follow_the_adaptation_rules(text: str, c_in: int, filters: int, stride: int, expected: int) -> None:
    assert parse_operator(text).params(c_in, filters, stride) == expected


def test_has_weights() -> None:
    assert not parse_operator("identity").has_weights
    assert not parse_operator("2x2 maxpool").has_weights
    assert parse_operator("2r SE").has_weights
    assert parse_operator("3x3 tconv").has_weights


def test_flops_count_conv_multiply_adds_at_the_right_resolution() -> None:
    conv = parse_operator("3x3 conv")
    assert conv.flops(4, 8, (16, 16)) == 2 * 16 * 16 * 9 * 4 * 8
    assert conv.flops(4, 8, (16, 16), stride=2) == 2 * 8 * 8 * 9 * 4 * 8
    # a dilated conv cannot stride: it runs at full resolution, then max-pools
    assert parse_operator("3x3:2dr conv").flops(4, 8, (16, 16), stride=2) == 2 * 16 * 16 * 9 * 4 * 8
    # the zoomed conv runs at half resolution
    assert parse_operator("3x3:2z zconv").flops(4, 8, (16, 16)) == 2 * 8 * 8 * 9 * 4 * 8
    assert parse_operator("3x3 dconv").flops(4, 8, (16, 16)) == 2 * 16 * 16 * (9 * 4 + 4 * 8)
    assert parse_operator("2x2 maxpool").flops(8, 8, (16, 16)) == 0


@pytest.mark.parametrize("text", [t for t, _ in ALL_FORMS])
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_every_operator_reaches_the_target_shape(text: str, stride: int) -> None:
    g = LayerGraph()
    x = g.input(Shape(16, 8, 3))
    out = emit_operator(g, parse_operator(text), x, 5, stride)
    assert g.shape(out) == Shape(16 // stride, 8 // stride, 5)


def test_operator_rejects_a_stride_that_does_not_divide() -> None:
    g = LayerGraph()
    x = g.input(Shape(6, 6, 3))
    with pytest.raises(ValueError, match="stride 4"):
        emit_operator(g, parse_operator("3x3 conv"), x, 5, 4)


def test_zoom_factor_adapts_to_small_or_odd_sizes() -> None:
    assert zoom_factor(2, 8, 8) == 2
    assert zoom_factor(4, 6, 6) == 3
    assert zoom_factor(4, 6, 4) == 2
    assert zoom_factor(2, 1, 1) == 1
    g = LayerGraph()
    out = emit_operator(g, parse_operator("3x3:4z zconv"), g.input(Shape(2, 2, 3)), 4, 2)
    assert g.shape(out) == Shape(1, 1, 4)


def test_graph_counts_only_what_reaches_the_output() -> None:
    g = LayerGraph()
    x = g.input(Shape(8, 8, 2))
    used = g.conv_bn_act(x, 4, (3, 3))
    g.conv_bn_act(x, 16, (3, 3))  # dead branch
    assert g.total_params(used) == 9 * 2 * 4 + bn(4)
