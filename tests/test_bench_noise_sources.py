"""The noise-source ablation benchmark switches off exactly the source it names (and `full` is the run's tiles)."""

from __future__ import annotations

import pytest

pytest.importorskip("aihwkit")

from benchmarks.studies import bench_noise_sources as B  # noqa: E402
from popnas_seg.analog.rpu import inference_rpu_config  # noqa: E402
from popnas_seg.config import AnalogConfig  # noqa: E402


def _summary(rpu) -> dict:
    nm = rpu.noise_model
    return {
        "prog": nm.prog_noise_scale,
        "read": nm.read_noise_scale,
        "drift": nm.drift_scale,
        "g_max": nm.g_converter.g_max,
        "out_noise": rpu.forward.out_noise,
        "inp_res": rpu.forward.inp_res,
        "out_res": rpu.forward.out_res,
        "clip": rpu.clip.type.name,
        "clip_sigma": rpu.clip.sigma,
        "compensation": type(rpu.drift_compensation).__name__,
    }


def test_full_is_the_runs_inference_tiles():
    cfg = AnalogConfig()
    assert _summary(B._rpu(cfg, "full")) == _summary(inference_rpu_config(cfg))


@pytest.mark.parametrize(
    "ablation, changed",
    [
        ("no prog noise", {"prog": 0.0}),
        ("no read noise", {"read": 0.0}),
        ("no drift", {"drift": 0.0}),
        ("no out noise", {"out_noise": 0.0}),
        ("ideal DAC/ADC", {"inp_res": -1.0, "out_res": -1.0}),
        ("no clipping", {"clip": "NONE"}),
        (
            "all off",
            {
                "prog": 0.0,
                "read": 0.0,
                "drift": 0.0,
                "out_noise": 0.0,
                "inp_res": -1.0,
                "out_res": -1.0,
                "clip": "NONE",
            },
        ),
    ],
)
def test_each_ablation_changes_only_its_sources(ablation, changed):
    cfg = AnalogConfig(out_noise=0.04, g_max=25.0)
    full, ablated = _summary(B._rpu(cfg, "full")), _summary(B._rpu(cfg, ablation))
    assert {k: v for k, v in ablated.items() if full[k] != v} == changed
