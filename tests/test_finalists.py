"""Finalists: selection rules and helpers on synthetic records (fast); the whole stage end to end (slow)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import pytest

from popnas_seg.config import ArchitectureConfig
from popnas_seg.finalists import knee_distances, macro_variants, select_finalists
from popnas_seg.results import TrainingResult
from popnas_seg.runlog.events import (
    FinalistDriftDone,
    FinalistExported,
    FinalistsFinished,
    FinalistsSelected,
    FinalistTrained,
    ModelSelectionDone,
    NetworkFinished,
    Result,
)

OBJ3 = ["dice", "params", "analog_robustness"]


def _r(i: int, params: int, dice: float, analog: float | None = None, status: str = "ok") -> TrainingResult:
    return TrainingResult(
        network_id=i,
        encoding=f"[(-1,3x3 conv,-{i},identity)]",
        blocks=1,
        dice=dice,
        miou=dice,
        params=params,
        flops=0,
        train_time_s=1.0,
        inference_time_ms=1.0,
        epochs=1,
        status=status,
        analog_dice=analog,
    )


def _ids(rs: list[TrainingResult]) -> list[int]:
    return [r.network_id for r in rs]


def test_best_dice_and_best_analog_order_the_front() -> None:
    rs = [
        _r(1, 1000, 0.60, 0.58),
        _r(2, 5000, 0.80, 0.50),
        _r(3, 3000, 0.70, 0.69),
        _r(4, 9000, 0.65, 0.40),  # dominated by 2 (bigger, worse Dice and analog)
        _r(5, 10, 0.99, 0.99, status="failed"),
    ]
    assert _ids(select_finalists(rs, "best_dice", 2, OBJ3)) == [2, 3]
    assert _ids(select_finalists(rs, "best_analog", 2, OBJ3)) == [3, 1]
    # the dominated network only comes in once the front is exhausted; failed networks never
    assert _ids(select_finalists(rs, "best_dice", 10, OBJ3)) == [2, 3, 1, 4]


def test_best_analog_puts_unprobed_networks_last() -> None:
    rs = [_r(1, 1000, 0.9, None), _r(2, 500, 0.5, 0.45), _r(3, 200, 0.4, None)]  # all non-dominated
    assert _ids(select_finalists(rs, "best_analog", 3, ["dice", "params"])) == [2, 1, 3]


def test_knee_picks_the_point_where_size_stops_buying_dice() -> None:
    front = [_r(1, 1000, 0.50), _r(2, 2000, 0.78), _r(3, 10_000, 0.80), _r(4, 100_000, 0.82)]
    dist = knee_distances(front)
    assert max(range(4), key=lambda k: dist[k]) == 1
    assert dist[0] == pytest.approx(0.0, abs=1e-9) and dist[3] == pytest.approx(0.0, abs=1e-9)  # chord ends
    dominated = _r(5, 50_000, 0.6)
    picked = select_finalists(front + [dominated], "knee", 5, ["dice", "params"])
    assert _ids(picked)[0] == 2 and _ids(picked)[-1] == 5
    assert knee_distances(front[:2]) == [0.0, 0.0]  # too few points: no knee, ties broken by Dice
    assert _ids(select_finalists(front[:2], "knee", 1, ["dice", "params"])) == [2]
    with pytest.raises(ValueError):
        select_finalists(front, "nope", 1, ["dice"])


def test_macro_variants_respect_the_input_size() -> None:
    arch = ArchitectureConfig(filters=8, motifs=2)
    assert [s for s, _ in macro_variants(arch, (16, 16, 1), False)] == [""]
    variants = dict(macro_variants(arch, (16, 16, 1), True))
    assert variants["_f16"].filters == 16 and variants["_m3"].motifs == 3 and variants[""] is arch
    assert "_m3" not in dict(macro_variants(arch, (12, 12, 1), True))  # 12 is not divisible by 2**3


def test_drift_report_is_one_typed_object_with_one_row_per_variant_and_time() -> None:
    from popnas_seg.analog.drift import DriftCurve, DriftReport

    stored = {
        "times": [1.0, 3600.0],
        "repetitions": 3,
        "digital_dice": 0.8,
        "coverage": {},
        "after_hwa": None,
        "before_hwa": {"times": [3600.0, 1.0], "mean": [0.6, 0.7], "std": [0.2, 0.1], "dice": [[0.6], [0.7]]},
        "digital_control": {"mean": [0.75, 0.74], "std": [0.0, 0.01]},  # early reports: times only at the top
        "timings": {"score_before_s": 6.0, "score_control_s": 3.0},
        "unknown_key": 1,
    }
    report = DriftReport.from_dict(stored)
    assert isinstance(report.before_hwa, DriftCurve) and report.digital_control.times == [1.0, 3600.0]
    assert report.rows("n") == [
        {"network": "n", "hwa": "before", "time": 1.0, "mean": 0.7, "std": 0.1},
        {"network": "n", "hwa": "before", "time": 3600.0, "mean": 0.6, "std": 0.2},
        {"network": "n", "hwa": "control", "time": 1.0, "mean": 0.75, "std": 0.0},
        {"network": "n", "hwa": "control", "time": 3600.0, "mean": 0.74, "std": 0.01},
    ]
    assert report.before_hwa.at(3600.0) == (0.6, 0.2) and report.before_hwa.at(7.0) is None
    assert report.seconds_per_eval() == pytest.approx(9.0 / (4 * 3))  # 4 (variant, time) points x 3 reps
    assert DriftReport.from_dict(report.to_dict()) == report  # the journal / JSON round trip
    with pytest.raises(ValueError, match="2 times, 1 means"):
        DriftCurve(times=[1.0, 2.0], mean=[0.5], std=[0.1])
    timeless = DriftReport(
        times=[1.0],
        repetitions=2,
        before_hwa=DriftCurve([1.0], [0.5], [0.0]),
        after_hwa=None,
        digital_dice=0.5,
        coverage={},
        timings={},
    )
    assert timeless.seconds_per_eval() is None


def _tiny_config(tmp_path: Path):
    from popnas_seg.config import RunConfig

    return RunConfig.model_validate(
        {
            "dataset": {
                "samples": 16,
                "generated_size": [32, 32],
                "crop": [16, 16],
                "batch_size": 4,
                "validation_size": 0.25,
                "test_size": 0.25,
                "augmentation": {"enabled": False},
            },
            "architecture_hyperparameters": {"filters": 4, "motifs": 1, "normal_cells_per_motif": 0},
            "training_hyperparameters": {"epochs": 1},
            "search_space": {"operators": ["identity", "3x3 conv", "2x2 maxpool"]},
            "analog": {
                "finalists": 1,
                "repetitions": 2,
                "hwa_epochs": 1,
                "eval_times": [1.0, 2592000.0],
                "model_selection_epochs": 1,
                "final_epochs": 1,
                "selection_rule": "best_dice",
                "unet_baseline": True,
                "probe_images": 4,
            },
            "others": {"seed": 1},
        }
    )


@pytest.mark.slow
def test_finalists_end_to_end_and_resume(tmp_path: Path) -> None:
    """Tiny real run: 1 finalist + U-Net, 1 epoch, 2 programmings; a second run retrains nothing."""
    import csv

    from popnas_seg.data.pipeline import load_data
    from popnas_seg.finalists import run_finalists
    from popnas_seg.runlog.folder import RunFolder

    config = _tiny_config(tmp_path)
    run = RunFolder.create(tmp_path / "logs", "tiny", config)
    try:
        # search results as the search would journal them (the finalists retrain from the encoding)
        for i, (enc, dice, params) in enumerate(
            [("[(-1,3x3 conv,-1,identity)]", 0.7, 500), ("[(-1,identity,-1,2x2 maxpool)]", 0.5, 300)], start=1
        ):
            r = TrainingResult(
                network_id=i,
                encoding=enc,
                blocks=1,
                dice=dice,
                miou=dice,
                params=params,
                flops=1,
                train_time_s=1.0,
                inference_time_ms=1.0,
                epochs=1,
                analog_dice=dice - 0.1,
                step=1,
                origin="b1",
            )
            run.journal.append(NetworkFinished(network_id=i, result=Result.of(r)))
        data = load_data(config.dataset, config.others.seed)
        rows = run_finalists(run, config, data)
        final = run.final_dir
        assert [r["network"] for r in rows] == ["1", "unet"]
        for name in ("1", "unet"):
            for f in ("model.keras", "model.onnx", "model.pt", "drift_report.json"):
                assert (final / name / f).exists(), (name, f)
        with open(final / "finalists.csv") as fh:
            table = list(csv.DictReader(fh))
        assert [t["network"] for t in table] == ["1", "unet"]
        for t in table:
            assert 0.0 <= float(t["test_dice"]) <= 1.0 and int(t["params"]) > 0
            assert t["export_equivalent"] == "True"
            assert 0.0 < float(t["analog_coverage"]) <= 1.0
            assert t["analog_dice_hwa_30d"] != "" and t["analog_dice_nohwa_1s_std"] != ""
        with open(final / "drift.csv") as fh:
            drift = list(csv.DictReader(fh))
        assert len(drift) == 2 * 3 * 2  # networks x (no HWA, digital control, HWA) x times
        assert (final / "model_selection.csv").exists()
        assert (run.plots_dir / "drift_curves.png").exists()
        assert (run.plots_dir / "sample_predictions.png").exists()
        exported = run.journal.events(FinalistExported)
        assert all(abs(e["keras_test_dice"] - e["torch_test_dice"]) <= 1e-3 for e in exported)

        counts = {
            k: len(run.journal.events(k))
            for k in (ModelSelectionDone, FinalistTrained, FinalistExported, FinalistDriftDone)
        }
        mtimes = {p: p.stat().st_mtime_ns for p in final.rglob("model.*")}
        rows_again = run_finalists(run, config, data)
        assert [r["network"] for r in rows_again] == ["1", "unet"]
        assert {k: len(run.journal.events(k)) for k in counts} == counts  # nothing retrained or re-scored
        assert {p: p.stat().st_mtime_ns for p in final.rglob("model.*")} == mtimes
        assert len(run.journal.events(FinalistsFinished)) == 2
    finally:
        run.close()


def test_finalists_stage_with_a_fake_trainer_writes_three_drift_rows_and_learning_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage's bookkeeping without training or AIHWKit: the fake trainer records what the stage asked
    for (final training to convergence for finalists and U-Net alike), the fake drift job returns three
    curves, and drift.csv / finalists.csv / the figures come out with no HWA, control and HWA rows."""
    import csv

    from popnas_seg.analog import drift as drift_module
    from popnas_seg.analog import export as export_module
    from popnas_seg.analog.drift import DriftReport
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.evaluation.evaluator import NetworkEvaluator
    from popnas_seg.finalists import run_finalists
    from popnas_seg.finalists.stage import FinalistsStage
    from popnas_seg.runlog.folder import RunFolder

    config = _tiny_config(tmp_path)
    calls: list[dict] = []

    class FakeTrainer:
        def train(
            self,
            model,
            *,
            network_id,
            encoding,
            blocks,
            seed,
            out_dir=None,
            epochs=None,
            flops=0,
            early_stopping_patience=None,
            **_,
        ):
            calls.append(
                {
                    "encoding": encoding,
                    "epochs": epochs,
                    "patience": early_stopping_patience,
                    "out": out_dir,
                    "reinitialize": _.get("reinitialize", True),
                    "keep_initial": _.get("keep_initial", False),
                }
            )
            if out_dir is not None:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                (Path(out_dir) / "history.csv").write_text(
                    "epoch,dice,loss,val_dice,val_loss\n0,0.5,0.9,0.4,1.0\n1,0.7,0.6,0.6,0.8\n2,0.8,0.5,0.55,0.8\n"
                )
            dice = 0.9 if encoding == "unet" else 0.8
            return TrainingResult(
                network_id=network_id,
                encoding=encoding,
                blocks=blocks,
                dice=dice,
                miou=dice,
                params=100,
                flops=flops,
                train_time_s=1.0,
                inference_time_ms=1.0,
                epochs=3,
            ), model

        def evaluate(self, model, split="val", fold=0):
            return {"dice": 0.85, "miou": 0.8}

    def fake_drift(onnx_path, train_x, train_y, test_x, test_y, cfg, classes, ignore, out_dir, seed, batch, **kw):
        assert kw["val_x"] is not None and len(kw["val_x"]) == len(kw["val_y"])  # checkpoint selection data
        times = list(cfg.eval_times)

        def curve(base: float) -> dict:
            return {
                "times": times,
                "mean": [base - 0.01 * i for i in range(len(times))],
                "std": [0.01] * len(times),
                "dice": [[base]] * len(times),
            }

        report = DriftReport.from_dict(
            dict(
                times=times,
                repetitions=2,
                before_hwa=curve(0.7),
                after_hwa=curve(0.8),
                digital_control=curve(0.75),
                digital_dice=0.85,
                coverage={},
                timings={},
                hwa_epochs=cfg.hwa_epochs,
                hwa_best_epoch=1,
                control_best_epoch=1,
            )
        )
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "drift_report.json").write_text("{}")
        return report

    def fake_export(self, f, model):
        return self.run.journal.append(
            FinalistExported(name=f.name, equivalent=True, torch_max_abs_diff=0.0, onnxruntime_latency_ms=1.0)
        )

    warm: list[tuple[str, str]] = []

    class FakeModel:
        def save(self, path):
            Path(path).write_bytes(b"keras")

        def load_weights(self, path):
            warm.append((Path(path).parent.name, Path(path).name))

    monkeypatch.setattr(FinalistsStage, "_trainer_", lambda self: FakeTrainer())
    monkeypatch.setattr(NetworkEvaluator, "build", lambda self, encoding, arch: (FakeModel(), 1))
    monkeypatch.setattr(FinalistsStage, "export", fake_export)
    monkeypatch.setattr(export_module, "save_keras", lambda model, path: Path(path).write_bytes(b"keras"))
    monkeypatch.setattr(drift_module, "hwa_and_drift", fake_drift)
    run = RunFolder.create(tmp_path / "logs", "fake", config)
    try:
        r = TrainingResult(
            network_id=1,
            encoding="[(-1,3x3 conv,-1,identity)]",
            blocks=1,
            dice=0.7,
            miou=0.7,
            params=500,
            flops=1,
            train_time_s=1.0,
            inference_time_ms=1.0,
            epochs=1,
            step=1,
        )
        run.journal.append(NetworkFinished(network_id=1, result=Result.of(r)))
        data = load_data(config.dataset, config.others.seed)
        rows = run_finalists(run, config, data)
        assert [row["network"] for row in rows] == ["1", "unet"]
        final = [c for c in calls if c["patience"] is not None]  # model selection has no patience
        assert [c["encoding"] for c in final] == ["[(-1,3x3 conv,-1,identity)]", "unet"]
        assert {(c["epochs"], c["patience"]) for c in final} == {
            (config.analog.final_epochs, config.analog.early_stopping_patience)
        }
        # both start from their model-selection weights and keep them unless an epoch beats them
        assert warm == [("1", "model.keras"), ("unet", "model.keras")]
        assert all(not c["reinitialize"] and c["keep_initial"] for c in final)
        with open(run.final_dir / "model_selection.csv") as fh:
            assert [row["variant"] for row in csv.DictReader(fh)] == ["1", "unet"]
        selection = [c for c in calls if c["patience"] is None]
        assert [c["encoding"] for c in selection] == ["[(-1,3x3 conv,-1,identity)]", "unet"]
        assert {c["epochs"] for c in selection} == {config.analog.model_selection_epochs}
        with open(run.final_dir / "drift.csv") as fh:
            drift = list(csv.DictReader(fh))
        times = len(config.analog.eval_times)
        assert len(drift) == 2 * 3 * times  # networks x (no HWA, control, HWA) x times
        for name in ("1", "unet"):
            kinds = [d["hwa"] for d in drift if d["network"] == name]
            assert sorted(set(kinds)) == ["after", "before", "control"] and len(kinds) == 3 * times
        with open(run.final_dir / "finalists.csv") as fh:
            table = list(csv.DictReader(fh))
        assert float(table[0]["analog_dice_control_30d"]) == pytest.approx(0.74)
        assert float(table[0]["analog_dice_hwa_30d"]) == pytest.approx(0.79)
        assert float(table[0]["analog_dice_nohwa_1s"]) == pytest.approx(0.7)
        assert (run.plots_dir / "learning_curves.png").stat().st_size > 0
        assert (run.plots_dir / "drift_curves.png").stat().st_size > 0
        # a resumed stage trains and scores nothing again: the drift rows come back from the journal's reports
        (run.final_dir / "drift.csv").unlink()
        calls.clear()
        monkeypatch.setattr(drift_module, "hwa_and_drift", lambda *a, **k: pytest.fail("scored again"))
        assert run_finalists(run, config, data) == rows and calls == []
        with open(run.final_dir / "drift.csv") as fh:
            assert list(csv.DictReader(fh)) == drift
    finally:
        run.close()


def test_short_final_training_never_loses_the_model_selection_weights(tmp_path: Path) -> None:
    """A deliberately short final budget (1 epoch after 3 of model selection): final training starts from the
    model-selection weights and keeps them unless an epoch beats them, for the finalist and the U-Net alike
    (real Keras training of tiny networks; export and AIHWKit are not needed for this)."""
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.finalists.stage import UNET, FinalistsStage
    from popnas_seg.runlog.folder import RunFolder

    config = _tiny_config(tmp_path)
    config.analog.model_selection_epochs = 3
    config.analog.final_epochs = 1
    config.analog.early_stopping_patience = 1
    config.training_hyperparameters.steps_per_epoch = 3
    run = RunFolder.create(tmp_path / "logs", "short", config)
    try:
        r = TrainingResult(
            network_id=1,
            encoding="[(-1,3x3 conv,-1,identity)]",
            blocks=1,
            dice=0.7,
            miou=0.7,
            params=500,
            flops=1,
            train_time_s=1.0,
            inference_time_ms=1.0,
            epochs=1,
            step=1,
        )
        run.journal.append(NetworkFinished(network_id=1, result=Result.of(r)))
        stage = FinalistsStage(run, config, load_data(config.dataset, config.others.seed))
        finalists = stage.model_selection(stage.select()) + [stage.unet_selection()]
        assert [f.name for f in finalists] == ["1", UNET]
        for f in finalists:
            selected = stage._last(ModelSelectionDone, variant=f.variant)
            assert selected is not None and selected["status"] == "ok", f.name  # the U-Net has the same budget
            assert (run.final_dir / "model_selection" / f.variant / "model.keras").is_file()
            trained, _ = stage.final_training(f)
            result = TrainingResult.from_dict(trained["result"])
            assert trained["start_weights"] == f"model_selection/{f.variant}/model.keras"
            # the starting weights are the model-selection network: the same validation Dice, measured again
            assert result.start_val_dice == pytest.approx(selected["dice"], abs=1e-4), f.name
            assert result.dice >= selected["dice"] - 1e-4, (f.name, result.dice, selected["dice"])
            assert (run.final_dir / f.name / "model.keras").is_file() and trained["test_dice"] is not None
    finally:
        run.close()


# ---------------------------------------------------------------- size-aware selection (issue 34)


def _s(i: int, params: int, dice: float, analog: float | None, std: float = 0.0) -> TrainingResult:
    r = _r(i, params, dice, analog)
    r.analog_dice_std = std if analog is not None else None
    r.analog_score = None if analog is None else analog - std  # risk_k 1
    return r


def test_size_buckets_always_keep_a_small_finalist() -> None:
    from popnas_seg.finalists.selection import default_max_params

    # the large networks win on every score: best_analog takes the two largest, size_buckets one small + one large
    rs = [
        _s(1, 4_000, 0.84, 0.80, 0.005),
        _s(2, 12_000, 0.85, 0.82, 0.04),
        _s(3, 17_000, 0.86, 0.83, 0.01),
        _s(4, 30_000, 0.90, 0.89, 0.01),
        _s(5, 33_000, 0.91, 0.90, 0.01),
    ]
    assert _ids(select_finalists(rs, "best_analog", 2, OBJ3)) == [5, 4]
    max_params = default_max_params(110_194)
    assert max_params == round(0.15 * 110_194) == 16_529  # the U-Net fraction default
    assert default_max_params(110_194, 5_000) == 5_000  # analog.max_params wins when set
    picked = select_finalists(rs, "size_buckets", 2, OBJ3, max_params)
    # small: network 2 has the higher mean (0.82) but spreads (0.04): its score 0.78 loses to network 1's 0.795;
    # the one bucket above 16.5k holds 3, 4 and 5: 5 wins
    assert _ids(picked) == [1, 5]
    assert picked[0].params <= max_params
    # with three finalists the large range splits in two log buckets: (16.5k, 23.4k] -> 3, (23.4k, 33k] -> 5
    assert _ids(select_finalists(rs, "size_buckets", 3, OBJ3, max_params)) == [1, 3, 5]
    # one finalist: the small one
    assert _ids(select_finalists(rs, "size_buckets", 1, OBJ3, max_params)) == [1]


def test_size_buckets_rank_by_risk_aware_score_and_fill_empty_buckets() -> None:
    # same mean, but network 2's programmings spread: the risk-aware score prefers network 1
    rs = [
        _s(1, 3_000, 0.80, 0.78, 0.005),
        _s(2, 5_000, 0.81, 0.78, 0.05),
        _s(3, 90_000, 0.90, 0.88, 0.01),
        _s(4, 100_000, 0.92, 0.89, 0.01),
    ]
    assert _ids(select_finalists(rs, "size_buckets", 1, OBJ3, 10_000)) == [1]
    # 4 finalists, 3 buckets above 10k: (10k, 21.5k] and (21.5k, 46k] are empty -> the best remaining front nets
    assert _ids(select_finalists(rs, "size_buckets", 4, OBJ3, 10_000)) == [1, 4, 3, 2]
    # nothing small enough: the smallest network is the small finalist
    assert _ids(select_finalists(rs, "size_buckets", 2, OBJ3, 1_000)) == [1, 4]
    # unprobed networks rank by Dice after probed ones; failed networks never count
    plain = [_r(1, 500, 0.7), _r(2, 800, 0.75), _r(3, 50_000, 0.9), _r(4, 600, 0.99, status="failed")]
    assert _ids(select_finalists(plain, "size_buckets", 2, ["dice", "params"], 1_000)) == [2, 3]
    assert select_finalists([], "size_buckets", 2, OBJ3, 1_000) == []
    with pytest.raises(ValueError):
        select_finalists(rs, "size_buckets", 2, OBJ3)  # max_params is required


def test_finalist_stage_selects_a_small_network_under_the_unet_fraction(tmp_path: Path) -> None:
    """The stage resolves analog.max_params from the U-Net at this architecture and journals it."""
    from popnas_seg.data.pipeline import load_data
    from popnas_seg.finalists.selection import default_max_params
    from popnas_seg.finalists.stage import FinalistsStage
    from popnas_seg.models.cost import unet_params
    from popnas_seg.runlog.folder import RunFolder

    config = _tiny_config(tmp_path)
    config.analog.selection_rule = "size_buckets"
    config.analog.finalists = 2
    data = load_data(config.dataset, config.others.seed)
    unet = unet_params(config.architecture_hyperparameters, int(data.input_shape[-1]), data.classes_count)
    limit = default_max_params(unet)
    run = RunFolder.create(tmp_path / "logs", "select", config)
    try:
        rows = [
            _s(1, limit // 4, 0.70, 0.60, 0.02),
            _s(2, limit * 2, 0.80, 0.75, 0.01),
            _s(3, limit * 3, 0.85, 0.80, 0.01),
        ]
        for r in rows:
            d = r.to_dict()
            if r.network_id == 3:  # a row journaled before issue 34: no analog_score, backfilled on read
                del d["analog_score"]
            run.journal.append(NetworkFinished(network_id=r.network_id, result=Result.model_validate(d)))
        picked = FinalistsStage(run, config, data).select()
        assert _ids(picked) == [1, 3]
        event = run.journal.events(FinalistsSelected)[-1]
        assert event["max_params"] == limit and event["rule"] == "size_buckets"
        assert picked[1].analog_score == pytest.approx(0.79)  # backfilled: 0.80 - 1.0 x 0.01
    finally:
        run.close()
