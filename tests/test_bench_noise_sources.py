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


@pytest.mark.parametrize(
    "ablation, changed",
    [
        ("no prog noise", {"prog": 0.0}),
        ("no read noise", {"read": 0.0}),
        ("no out noise", {"out_noise": 0.0}),
        ("no drift compensation", {"compensation": "NoneType"}),
        ("no nu spread", {}),  # same scales; only the drift exponents differ (next test)
        ("uniform nu", {}),
    ],
)
def test_each_spread_ablation_changes_only_its_source(ablation, changed):
    cfg = AnalogConfig()
    full, ablated = _summary(B._spread_rpu(cfg, "full")), _summary(B._spread_rpu(cfg, ablation))
    assert full == _summary(inference_rpu_config(cfg))
    assert {k: v for k, v in ablated.items() if full[k] != v} == changed


def test_nu_variants_drop_the_device_spread_only():
    """`no nu spread` keeps PCM's conductance-dependent mean nu (small conductances drift faster) without the
    per-device draw; `uniform nu` gives every device one nu; the full model draws a different nu per device."""
    import torch

    cfg = AnalogConfig()
    g = torch.tensor([0.5, 5.0, 25.0, 25.0, 25.0])
    full = B._spread_rpu(cfg, "full").noise_model
    mean = B._spread_rpu(cfg, "no nu spread").noise_model
    uniform = B._spread_rpu(cfg, "uniform nu").noise_model
    torch.manual_seed(0)
    drawn = full.generate_drift_coefficients(g)
    assert len(set(drawn[2:].tolist())) == 3  # equal conductances, different devices: different nu
    nu = mean.generate_drift_coefficients(g)
    assert torch.equal(nu, mean.generate_drift_coefficients(g))  # no randomness
    assert nu[0] > nu[1] > nu[2] and nu[2] == nu[3] == nu[4]
    assert torch.allclose(nu, torch.tensor([0.0851, 0.0494, 0.049, 0.049, 0.049]), atol=1e-3)
    assert torch.equal(uniform.generate_drift_coefficients(g), torch.full_like(g, B.NU_UNIFORM))
    assert type(mean).apply_programming_noise_to_conductance is type(full).apply_programming_noise_to_conductance


def test_hwa_variants_are_valid_analog_settings():
    assert B.hwa_overrides("8") == {"hwa_epochs": 8}
    mult = AnalogConfig.model_validate(B.hwa_overrides("2-mult0.2"))
    assert (mult.hwa_epochs, mult.hwa_noise_type, mult.hwa_noise_std) == (2, "multiplicative", 0.2)


def test_std_ratio_is_last_over_first_time_with_an_interval_around_it():
    first = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97]
    last = [0.8 + 3 * (v - 0.9) for v in first]  # three times the spread of the same chips
    means, stds, ratio, (low, high) = B._std_ratio([first, last])
    assert means == pytest.approx([0.935, 0.905]) and stds[1] == pytest.approx(3 * stds[0])
    assert ratio == pytest.approx(3.0) and low == pytest.approx(3.0) and high == pytest.approx(3.0)
