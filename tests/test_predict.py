"""`predict`: whole images of any size, masks whose Dice is the whole-image evaluation, analog at a drift time,
bad inputs as one-line errors with exit code 2.

The run folder is built directly (restore/config.json + one finalist under final/), which takes seconds,
instead of running a search; tests/test_predict_e2e.py runs the real pipeline and then `predict`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import popnas_seg  # noqa: E402
from popnas_seg.atomic import atomic_write_json  # noqa: E402
from popnas_seg.cli import main  # noqa: E402
from popnas_seg.config import AnalogConfig, config_from_dict, dump_config  # noqa: E402
from popnas_seg.data.pipeline import load_data  # noqa: E402
from popnas_seg.imaging.scores import dice_score  # noqa: E402
from popnas_seg.inference.inputs import parse_duration  # noqa: E402
from popnas_seg.inference.predictor import Predictor  # noqa: E402
from popnas_seg.models.builder import build_model  # noqa: E402
from popnas_seg.search_space.encoding import Cell  # noqa: E402
from popnas_seg.training.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = [(48, 64), (40, 40)]  # both larger than the 16x16 crop, two different sizes


def _blobs(size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[: size[0], : size[1]]
    mask = np.zeros(size, np.uint8)
    for _ in range(4):
        cy, cx, r = rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(4, 9)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    image = np.clip(60 + 120 * mask + rng.normal(0, 20, size), 0, 255).astype(np.uint8)
    return image, mask


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A data folder (8 PNGs of two sizes) and a run folder holding one trained, exported finalist."""
    root = tmp_path_factory.mktemp("predict")
    data_dir = root / "data"
    (data_dir / "images").mkdir(parents=True)
    (data_dir / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        image, mask = _blobs(SIZES[i % 2], rng)
        Image.fromarray(image).save(data_dir / "images" / f"img{i}.png")
        Image.fromarray(mask).save(data_dir / "masks" / f"img{i}.png")
    config = config_from_dict(
        {
            "dataset": {
                "name": None,
                "path": str(data_dir),
                "crop": [16, 16],
                "batch_size": 4,
                "validation_size": 0.25,
                "test_size": 0.25,
            },
            "architecture_hyperparameters": {"filters": 4, "motifs": 2, "normal_cells_per_motif": 0},
            "training_hyperparameters": {"epochs": 3, "learning_rate": 0.01},
        }
    )
    data = load_data(config.dataset, seed=config.others.seed)
    run = root / "run"
    atomic_write_json(run / "restore" / "config.json", dump_config(config))
    final = run / "final" / "3"
    final.mkdir(parents=True)
    cell = Cell.from_string("[(-1,3x3 conv,-2,identity)]")
    trainer = Trainer(config, data)
    model = build_model(cell, config.architecture_hyperparameters, data.input_shape, data.classes_count)
    result, model = trainer.train(model, network_id=3, encoding=str(cell), blocks=1, seed=0, out_dir=None)
    from popnas_seg.analog.export import keras_to_onnx, save_keras

    save_keras(model, final / "model.keras")
    keras_to_onnx(model, final / "model.onnx")
    with open(run / "final" / "finalists.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["network", "val_dice"])
        writer.writeheader()
        writer.writerow({"network": "3", "val_dice": result.dice})
    test = trainer.evaluate(model, "test")
    return {
        "run": run,
        "data": data,
        "data_dir": data_dir,
        "test": test,
        "config": config,
        "model": model,
        "test_names": data.split_names()["test"],
    }


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_predict_masks_have_input_shapes_and_their_dice_is_the_whole_image_evaluation(
    run_folder: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    names = run_folder["test_names"]
    inputs = [str(run_folder["data_dir"] / "images" / f"{n}.png") for n in names]
    out = tmp_path / "masks"
    assert (
        main(["predict", "-r", str(run_folder["run"]), "--input", *inputs, "--output", str(out), "--probabilities"])
        == 0
    )
    assert "mask(s) written" in capsys.readouterr().err
    preds, trues = [], []
    for n in names:
        truth = _read(run_folder["data_dir"] / "masks" / f"{n}.png")
        pred = _read(out / f"{n}.png")
        assert pred.shape == truth.shape and pred.dtype == np.uint8
        probs = np.load(out / f"{n}.probs.npy")
        assert probs.shape == (*truth.shape, 2)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
        preds.append(pred.ravel())
        trues.append(truth.ravel())
    assert {tuple(_read(out / f"{n}.png").shape) for n in names} <= set(SIZES)
    dice = dice_score(np.concatenate(preds), np.concatenate(trues), 2)
    assert dice == pytest.approx(run_folder["test"]["dice"], abs=1e-6)
    assert dice > 0.3  # a trained network, not an empty prediction


def test_python_api_folder_input_and_predictor(run_folder: dict, tmp_path: Path) -> None:
    written = popnas_seg.predict(run_folder["run"], run_folder["data_dir"] / "images", tmp_path / "out")
    assert sorted(p.name for p in written) == [f"img{i}.png" for i in range(8)]
    predictor = Predictor(run_folder["run"])
    assert predictor.network == "3" and predictor.tile == (16, 16)
    raw = np.asarray(Image.open(run_folder["data_dir"] / "images" / "img1.png"), np.float32) / 255.0
    labels = predictor.predict(raw)
    np.testing.assert_array_equal(labels, _read(tmp_path / "out" / "img1.png"))
    small = predictor.predict(raw[:10, :7])  # smaller than a tile and not a multiple of 4: padded
    assert small.shape == (10, 7)


def test_parse_duration() -> None:
    assert parse_duration("1month") == 2592000.0
    assert parse_duration("30d") == parse_duration("1 month")
    assert parse_duration("3600") == parse_duration("1h") == 3600.0
    assert parse_duration("1y") == 31536000.0
    with pytest.raises(popnas_seg.errors.UserError):
        parse_duration("soon")


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_inputs_exit_2_with_one_line(run_folder: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = str(run_folder["run"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["predict", "-r", run, "--input", str(broken), "--output", str(tmp_path / "o")]) == 2
    assert "broken.png" in _one_error_line(capsys)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(rgb)
    assert main(["predict", "-r", run, "--input", str(rgb), "--output", str(tmp_path / "o")]) == 2
    assert "3 channel(s)" in _one_error_line(capsys)
    assert main(["predict", "-r", run, "--network", "99", "--input", str(rgb), "--output", str(tmp_path / "o")]) == 2
    assert "not a finalist" in _one_error_line(capsys)
    assert main(["predict", "-r", run, "--input", str(tmp_path / "missing.png"), "--output", str(tmp_path / "o")]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()  # nothing written when an input is bad


def test_run_folder_without_finalists_exits_2(run_folder: dict, tmp_path: Path) -> None:
    """Through the real entry point (a fresh interpreter): exit code 2 and one line, before TensorFlow loads."""
    empty = tmp_path / "run"
    atomic_write_json(empty / "restore" / "config.json", dump_config(run_folder["config"]))
    image = run_folder["data_dir"] / "images" / "img0.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "predict",
            "-r",
            str(empty),
            "--input",
            str(image),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no finalists" in lines[0], proc.stderr


def test_analog_predict_at_a_drift_time(run_folder: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from popnas_seg.analog.drift import hwa_and_drift
    from popnas_seg.imaging.tiling import pack_images

    data, final = run_folder["data"], run_folder["run"] / "final" / "3"
    x, y = data.train_arrays()
    tx, ty, sizes = pack_images(*data.test_images())
    report = hwa_and_drift(
        final / "model.onnx",
        x,
        y,
        tx,
        ty,
        AnalogConfig(hwa_epochs=0, eval_times=[1.0], repetitions=2),
        2,
        None,
        final,
        seed=0,
        batch_size=4,
        tile=(16, 16),
        test_sizes=sizes,
    )
    assert report.checkpoints["inference"] and report.before_hwa.mean[0] >= 0.0
    name = run_folder["test_names"][0]
    image = str(run_folder["data_dir"] / "images" / f"{name}.png")
    outs = []
    for k in range(2):
        out = tmp_path / f"analog{k}"
        assert (
            main(
                [
                    "predict",
                    "-r",
                    str(run_folder["run"]),
                    "--input",
                    image,
                    "--output",
                    str(out),
                    "--analog",
                    "--drift-time",
                    "1month",
                    "--seed",
                    "5",
                ]
            )
            == 0
        )
        outs.append(_read(out / f"{name}.png"))
    err = capsys.readouterr().err
    assert "drift 2.592e+06 s" in err
    assert (
        "using network 3 (best validation Dice; no analog recommendation in final/recommendation.json), analog "
        "(AIHWKit, no HWA checkpoint), drift 1 month (2,592,000 s), programming seed 5"
    ) in err
    truth = _read(run_folder["data_dir"] / "masks" / f"{name}.png")
    assert outs[0].shape == truth.shape
    assert np.mean(outs[0] == outs[1]) > 0.95  # same seed: the same programmed chip (ADC noise aside)
    assert (
        main(
            [
                "predict",
                "-r",
                str(run_folder["run"]),
                "--input",
                image,
                "--output",
                str(tmp_path / "d"),
                "--drift-time",
                "1d",
            ]
        )
        == 2
    )
    assert "--analog" in _one_error_line(capsys)


def test_dataset_rescale_is_applied_and_undone(run_folder: dict, tmp_path: Path) -> None:
    """With dataset.rescale the network sees scaled images, and the masks come back at the input size."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_folder["run"] / "final", run / "final")
    config = dump_config(run_folder["config"])
    config["dataset"]["rescale"] = 0.5
    atomic_write_json(run / "restore" / "config.json", config)
    predictor = Predictor(run)
    raw = np.asarray(Image.open(run_folder["data_dir"] / "images" / "img0.png"), np.float32) / 255.0
    assert predictor.preprocess(raw).shape == (24, 32, 1)
    probs = predictor.predict_probabilities([raw])[0]
    assert probs.shape == (48, 64, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)


def test_predict_never_writes_over_its_inputs(run_folder: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 37: `--output` = the input folder replaced both images by masks and exited 0."""
    import shutil

    run = str(run_folder["run"])
    images = tmp_path / "same"
    shutil.copytree(run_folder["data_dir"] / "images", images)
    before = {p.name: p.read_bytes() for p in images.iterdir()}

    def unchanged() -> None:
        assert {p.name: p.read_bytes() for p in images.iterdir()} == before

    for extra in ([], ["--overwrite"]):  # --overwrite never reaches the inputs
        assert main(["predict", "-r", run, "--input", str(images), "--output", str(images), *extra]) == 2
        assert "is the folder of the input" in _one_error_line(capsys)
        unchanged()
    one = images / "img0.png"  # a single file, the output folder given another way
    assert main(["predict", "-r", run, "--input", str(one), "--output", str(images / "." / "")]) == 2
    assert "is the folder of the input" in _one_error_line(capsys)
    out = tmp_path / "out"  # an output name that is a link to an input
    out.mkdir()
    (out / "img0.png").symlink_to(one)
    assert main(["predict", "-r", run, "--input", str(one), "--output", str(out), "--overwrite"]) == 2
    assert "would overwrite the input" in _one_error_line(capsys)
    unchanged()


def test_predict_keeps_existing_files_unless_overwrite(
    run_folder: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run, image = str(run_folder["run"]), str(run_folder["data_dir"] / "images" / "img0.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.probs.npy").write_bytes(b"mine")
    assert main(["predict", "-r", run, "--input", image, "--output", str(out), "--probabilities"]) == 2
    assert "already exists" in _one_error_line(capsys) and "--overwrite" in capsys.readouterr().err + "--overwrite"
    assert sorted(p.name for p in out.iterdir()) == ["img0.probs.npy"]  # nothing written
    assert (out / "img0.probs.npy").read_bytes() == b"mine"
    assert main(["predict", "-r", run, "--input", image, "--output", str(out), "--probabilities", "--overwrite"]) == 0
    assert np.load(out / "img0.probs.npy").shape == (48, 64, 2)
    from popnas_seg.inference.outputs import check_outputs

    (out / "img1.overlay.png").write_bytes(b"mine")  # --overlay's file is checked the same way
    with pytest.raises(popnas_seg.errors.UserError, match=r"img1\.overlay\.png already exists"):
        check_outputs([run_folder["data_dir"] / "images" / "img1.png"], out, overlay=True)


def test_predict_write_failures_are_one_line_naming_the_path(
    run_folder: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Read-only file system / full disk while writing a mask: exit 2 naming the file, not a traceback."""
    import errno

    import popnas_seg.inference.predictor as predictor_module

    run, image = str(run_folder["run"]), str(run_folder["data_dir"] / "images" / "img0.png")
    for code in (errno.EROFS, errno.ENOSPC, errno.EACCES):

        def refuse(path: Path, data: bytes, code: int = code) -> Path:
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(predictor_module, "atomic_write_bytes", refuse)
        out = tmp_path / f"o{code}"
        assert main(["predict", "-r", run, "--input", image, "--output", str(out)]) == 2
        err = capsys.readouterr().err  # a progress line, then the error
        line = err.strip().splitlines()[-1]
        assert line.startswith("error: cannot write") and "Traceback" not in err
        assert str(out / "img0.png") in line and os.strerror(code) in line
    monkeypatch.undo()
    if os.geteuid() != 0:  # root writes through mode bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert main(["predict", "-r", run, "--input", image, "--output", str(locked / "masks")]) == 2
        assert "not writable" in _one_error_line(capsys)


def test_predict_batch_size_must_be_at_least_one(
    run_folder: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = str(run_folder["data_dir"] / "images" / "img0.png")
    assert (
        main(
            [
                "predict",
                "-r",
                str(run_folder["run"]),
                "--input",
                image,
                "--output",
                str(tmp_path / "o"),
                "--batch-size",
                "0",
            ]
        )
        == 2
    )
    assert "--batch-size" in capsys.readouterr().err
    with pytest.raises(popnas_seg.errors.UserError, match="at least 1"):
        Predictor(run_folder["run"], batch_size=0)
    assert not (tmp_path / "o").exists()


def test_predict_follows_the_recommendation_and_says_which_network_it_used(
    run_folder: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Two finalists, the U-Net recommended for digital use (it beats the finalist): predict uses it by default,
    says so, and --network still overrides; masks are palette PNGs (class indices a viewer shows), and --overlay
    writes the image with the mask drawn on it."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_folder["run"], run)
    shutil.copytree(run / "final" / "3", run / "final" / "unet")
    with open(run / "final" / "finalists.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["network", "status", "val_dice", "test_dice", "params"])
        writer.writeheader()
        writer.writerow({"network": "3", "status": "ok", "val_dice": 0.9, "test_dice": 0.5, "params": 100})
        writer.writerow({"network": "unet", "status": "ok", "val_dice": 0.8, "test_dice": 0.7, "params": 900})
    name = run_folder["test_names"][0]
    image = str(run_folder["data_dir"] / "images" / f"{name}.png")
    out = tmp_path / "masks"
    assert main(["predict", "-r", str(run), "--input", image, "--output", str(out), "--overlay"]) == 0
    err = capsys.readouterr().err
    assert "using network unet (recommended for digital use), digital (Keras)" in err.splitlines()[0]
    assert not (run / "final" / "recommendation.json").exists()  # computed from the tables; predict writes no run file
    (run / "final" / "recommendation.json").write_text(json.dumps({"version": 2, "digital": {"network": "3"}}))
    assert Predictor(run).network == "3"  # the file, when there, is what predict follows
    with Image.open(out / f"{name}.png") as mask:
        assert mask.mode == "P" and mask.getpalette()[:6] == [0, 0, 0, 255, 255, 255]  # black / white
        labels = np.asarray(mask)
    truth = _read(run_folder["data_dir"] / "masks" / f"{name}.png")
    assert labels.shape == truth.shape and set(np.unique(labels)) <= {0, 1} and labels.any()
    with Image.open(out / f"{name}.overlay.png") as overlay:
        assert overlay.mode == "RGB" and overlay.size == (truth.shape[1], truth.shape[0])
        rgb = np.asarray(overlay).astype(int)
    fg = rgb[labels == 1]
    assert (fg[:, 0] > fg[:, 1]).mean() > 0.9  # foreground tinted red; background left grey
    bg = rgb[labels == 0]
    assert (np.abs(bg[:, 0] - bg[:, 1]) <= 1).mean() > 0.9
    # a folder of outputs given as input again: the overlays are not images to segment
    from popnas_seg.inference.inputs import collect_inputs

    assert [p.name for p in collect_inputs([out])] == [f"{name}.png"]
    assert main(["predict", "-r", str(run), "--network", "3", "--input", image, "--output", str(tmp_path / "m3")]) == 0
    assert "using network 3 (chosen with --network), digital" in capsys.readouterr().err
