"""Segment new images with a network a run found: `Predictor` and `predict` (the API behind `run.py predict`).

What a user ships is one finalist folder, `logs/NAME/final/<id>/` (model.keras, model.onnx, model.pt and,
after the analog stage, the analog checkpoints), plus the run's `restore/config.json`, which fixes the
preprocessing. `best_model/` is a search-time network (a few epochs) and is not meant to be shipped.

Preprocessing contract (the same as training, `popnas_seg.data.preprocess.preprocess_image`):
1. read the file as training reads it (`data.folder.read_image`): channels last, float32, uint8 / 255 and
   uint16 / 65535, float files as stored;
2. scale by `dataset.rescale` (1: nothing);
3. normalise per image (`dataset.normalisation`: percentile / minmax / standard over all pixels);
4. segment the whole image with the run's `inference` tiling (popnas_seg/imaging/tiling.py): whole up to
   `inference.tile_size` pixels a side, larger images in overlapping tiles of that side blended with a
   gaussian weight; images are padded to a size the network takes.
The networks output softmax probabilities [H, W, classes]; the label mask is their argmax, scaled back
to the input size when `dataset.rescale` is not 1.

Analog mode runs the AIHWKit network (the hardware-aware checkpoint when there is one) in a worker process,
programmed once with `seed` and drifted to `drift_time` seconds: one simulated chip for every image.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from popnas_seg.atomic import atomic_write_bytes
from popnas_seg.command import tool_command
from popnas_seg.errors import UserError
from popnas_seg.inference.choice import list_finalists, recommended
from popnas_seg.inference.inputs import collect_inputs, parse_duration


class Predictor:
    """One finalist of a run, ready to segment images of any size (digital Keras, or analog AIHWKit)."""

    def __init__(
        self,
        run_folder: str | os.PathLike[str],
        network: str | int | None = None,
        *,
        analog: bool = False,
        drift_time: str | float | None = None,
        seed: int = 0,
        overlap: float | None = None,
        batch_size: int = 8,
        tile_size: int | None = None,
    ) -> None:
        from popnas_seg.config import load_config, unsupported_drift_time

        self.run_folder = Path(run_folder)
        restore = self.run_folder / "restore" / "config.json"
        if not restore.is_file():
            raise UserError(f'"{run_folder}" is not a run folder (no restore/config.json)')
        self.config = load_config(restore)
        finalists = list_finalists(self.run_folder)
        if not finalists:
            raise UserError(
                f"run folder {run_folder} has no finalists (final/<id>/model.keras): the finalists "
                f"stage has not run; finish the run with: {tool_command('-r', run_folder)}"
            )
        names = [r["network"] for r in finalists]
        self.analog = bool(analog)
        horizon: float | None = None
        if network is None:
            self.network, self.reason, horizon = recommended(self.run_folder, names, self.analog)
        elif str(network) in names:
            self.network, self.reason = str(network), "chosen with --network"
        else:
            raise UserError(f"--network {network} is not a finalist of {run_folder}; finalists: {', '.join(names)}")
        self.folder = self.run_folder / "final" / self.network
        overlap = self.config.inference.overlap if overlap is None else float(overlap)
        if not 0.0 <= overlap < 1.0:
            raise UserError(f"overlap must be in [0, 1), got {overlap}")
        tile_size = self.config.inference.tile_size if tile_size is None else int(tile_size)
        if tile_size < 0:
            raise UserError(f"tile size must be >= 0 (0: tiles of the training crop), got {tile_size}")
        self.overlap = float(overlap)
        if int(batch_size) < 1:
            raise UserError(f"batch size must be at least 1 tile, got {batch_size}")
        self.batch_size = int(batch_size)
        self.tile = (int(self.config.dataset.crop[0]), int(self.config.dataset.crop[1]))
        base = self.config.tiling()
        self.tiling = type(base)(base.crop, tile_size, base.divisor, self.overlap)
        self.seed = int(seed)
        # the analog recommendation was made at its horizon: predict drifts to it unless told otherwise
        self.drift_time = (
            parse_duration(drift_time) if drift_time is not None else float(horizon or self.config.analog.t_inference)
        )
        unsupported = unsupported_drift_time(self.config.analog.device, self.drift_time) if self.analog else None
        if unsupported is not None:
            raise UserError(f"drift time {unsupported}")
        self._model: Any = None
        self._channels: int | None = None
        self._checkpoint: str | None = None
        self._checkpoint_kind: str | None = None
        if self.analog:
            self._checkpoint = self._analog_checkpoint()

    def describe(self) -> str:
        """Which network, why, and how it runs: the line `predict` prints before it segments anything."""
        how = "digital (Keras)"
        if self.analog:
            from popnas_seg.plots import time_label

            weights = "HWA" if self._checkpoint_kind == "hwa" else "no HWA"
            seconds = f"{self.drift_time:,.0f}" if self.drift_time >= 1 else f"{self.drift_time:g}"
            how = (
                f"analog (AIHWKit, {weights} checkpoint), drift {time_label(self.drift_time)} "
                f"({seconds} s), programming seed {self.seed}"
            )
        return f"network {self.network} ({self.reason}), {how}"

    # ------------------------------------------------------------------ loading
    def _analog_checkpoint(self) -> str:
        from popnas_seg.analog.drift import DriftReport

        report = self.folder / "drift_report.json"
        if not report.is_file():
            raise UserError(
                f"finalist {self.network} of {self.run_folder} has no analog checkpoint "
                f"({report} is missing): the analog (drift) stage has not run for it"
            )
        checkpoints = DriftReport.load(report).checkpoints
        for kind in ("hwa", "inference"):
            path = checkpoints.get(kind)
            if path:
                candidate = Path(path)
                if not candidate.is_file():  # a moved run folder: the checkpoint sits beside the report
                    candidate = self.folder / Path(path).name
                if candidate.is_file():
                    self._checkpoint_kind = kind
                    return str(candidate.resolve())
        raise UserError(f"finalist {self.network}: no analog checkpoint file found in {self.folder}")

    def _keras_model(self) -> Any:
        if self._model is None:
            import keras

            self._model = keras.saving.load_model(self.folder / "model.keras")
        return self._model

    @property
    def channels(self) -> int:
        """Image channels the network takes."""
        if self._channels is None:
            if self.analog:
                import onnx

                dims = onnx.load(str(self.folder / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
                self._channels = int(dims[-1].dim_value)
            else:
                self._channels = int(self._keras_model().inputs[0].shape[-1])
        return self._channels

    @property
    def classes_count(self) -> int:
        return int(self.config.dataset.classes_count)

    # ------------------------------------------------------------------ inference
    def preprocess(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Raw image ([H, W] or [H, W, C] as read by `read_image`) -> the network's normalised input."""
        from popnas_seg.data.preprocess import preprocess_image

        img = np.asarray(image, np.float32)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3:
            raise UserError(f"{name}: expected an [H, W] or [H, W, C] image, got shape {img.shape}")
        if img.shape[-1] != self.channels:
            raise UserError(
                f"{name} has {img.shape[-1]} channel(s) but network {self.network} was trained on {self.channels}"
            )
        return preprocess_image(img, self.config.dataset)

    def _restore_size(self, probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if probs.shape[:2] == size:
            return probs
        import tensorflow as tf

        return np.asarray(tf.image.resize(probs, size, method="bilinear"), np.float32)

    def predict_probabilities(
        self,
        images: Sequence[np.ndarray],
        names: Sequence[str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> list[np.ndarray]:
        """Softmax probabilities [H, W, classes] of each raw image, at the image's own size."""
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        sizes = [tuple(np.shape(im)[:2]) for im in images]
        inputs = [self.preprocess(im, n) for im, n in zip(images, names)]
        if self.analog:
            probs = self._analog_probabilities(inputs, progress)
        else:
            probs = self._digital_probabilities(inputs, names, progress)
        return [self._restore_size(p, s) for p, s in zip(probs, sizes)]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Label mask [H, W] (class indices) of one raw image."""
        return np.argmax(self.predict_probabilities([image])[0], axis=-1).astype(np.int32)

    def _digital_probabilities(
        self, inputs: list[np.ndarray], names: list[str], progress: Callable[[str], None] | None
    ) -> list[np.ndarray]:
        from popnas_seg.imaging.tiling import predict_image

        model = self._keras_model()

        def predict_fn(batch: np.ndarray) -> np.ndarray:
            return np.asarray(model(batch, training=False), np.float32)

        out = []
        for i, (x, name) in enumerate(zip(inputs, names)):
            t0 = time.perf_counter()
            shown: list[int] = []

            def tiles(done: int, total: int, shown: list[int] = shown, name: str = name) -> None:
                step = max(1, total // 4)
                if progress is not None and total >= 64 and done // step > len(shown):
                    shown.append(done)
                    progress(f"  {name}: {done}/{total} tiles")

            out.append(predict_image(predict_fn, x, self.tiling, self.batch_size, progress=tiles))
            if progress is not None:
                progress(f"[{i + 1}/{len(inputs)}] {name} {x.shape[0]}x{x.shape[1]} ({time.perf_counter() - t0:.1f} s)")
        return out

    def _analog_probabilities(
        self, inputs: list[np.ndarray], progress: Callable[[str], None] | None
    ) -> list[np.ndarray]:
        import tempfile

        from popnas_seg.analog.worker import AnalogWorkerError, run_job
        from popnas_seg.imaging.tiling import pack_images

        x, _, sizes = pack_images(inputs, [np.zeros(im.shape[:2], np.int32) for im in inputs])
        if progress is not None:
            progress(
                f"analog: {len(inputs)} image(s) on network {self.network}, drift {self.drift_time:g} s, "
                f"seed {self.seed} (AIHWKit worker)"
            )
        with tempfile.TemporaryDirectory(prefix="popnas_predict_") as tmp:
            out = Path(tmp) / "probs.npz"
            params = {
                "onnx_path": str((self.folder / "model.onnx").resolve()),
                "checkpoint": self._checkpoint,
                "t_inference": self.drift_time,
                "seed": self.seed,
                "tile": self.tiling.to_dict(),
                "overlap": self.overlap,
                "batch_size": self.batch_size,
                "out": str(out),
            }
            try:
                run_job("analog_predict", params, {"x": x, "sizes": sizes}, timeout_s=None)
            except AnalogWorkerError as exc:
                raise RuntimeError(str(exc)) from None
            with np.load(out) as npz:
                probs = npz["probs"]
        return [probs[i, : int(h), : int(w)] for i, (h, w) in enumerate(sizes)]

    # ------------------------------------------------------------------ files
    def predict_files(
        self,
        files: Sequence[Path],
        output: str | os.PathLike[str],
        probabilities: bool = False,
        progress: Callable[[str], None] | None = None,
        overlay: bool = False,
        overwrite: bool = False,
    ) -> list[Path]:
        """Segment image files; write label masks under `output` with the same names (PNG/TIFF/NPY as the
        input; PNG masks are palette images, inference/masks.py), with `probabilities` also `<name>.probs.npy`
        ([H, W, classes] float32) and with `overlay` `<name>.overlay.png` (the image with the mask drawn on it).

        Refused before any work (inference/outputs.py): an output that is an input or in an input's folder,
        and, unless `overwrite`, an output file that exists."""
        from popnas_seg.data.folder import read_image
        from popnas_seg.inference.outputs import check_outputs, write_failed

        out_dir = Path(output).expanduser()
        plan = check_outputs(files, out_dir, probabilities, overwrite, overlay)
        images = [read_image(f) for f in files]  # every file is checked before any work starts
        for f, im in zip(files, images):
            if im.shape[-1] != self.channels:
                raise UserError(
                    f"image {f} has {im.shape[-1]} channel(s) but network {self.network} was trained on {self.channels}"
                )
        if progress is not None:  # every input is good: say what runs before the first write
            progress(f"using {self.describe()}")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failed(out_dir, exc) from None
        written: list[Path] = []
        chunk = 1 if not self.analog else len(files)  # digital: image by image; analog: one worker job
        for start in range(0, len(files), max(1, chunk)):
            batch_files = list(files[start : start + chunk])
            probs = self.predict_probabilities(images[start : start + chunk], [f.name for f in batch_files], progress)
            for k, (outputs, p) in enumerate(zip(plan[start : start + chunk], probs)):
                target = outputs.mask
                try:
                    labels = np.argmax(p, axis=-1)
                    written.append(_write_mask(outputs.mask, labels, self.classes_count))
                    if outputs.overlay is not None:
                        from popnas_seg.inference.masks import write_overlay

                        target = outputs.overlay
                        write_overlay(outputs.overlay, images[start + k], labels, self.classes_count)
                    if outputs.probabilities is not None:
                        target = outputs.probabilities
                        buffer = io.BytesIO()
                        np.save(buffer, p.astype(np.float32))
                        atomic_write_bytes(outputs.probabilities, buffer.getvalue())
                except OSError as exc:
                    raise write_failed(target, exc) from None
        return written


def _write_mask(path: Path, labels: np.ndarray, classes: int) -> Path:
    """A label mask written atomically in the input's format: PNG (8/16 bit), TIFF or NPY."""
    arr = labels.astype(np.uint8 if classes <= 256 else np.uint16)
    buffer = io.BytesIO()
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(buffer, arr)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(buffer, arr)
    else:
        from popnas_seg.inference.masks import mask_png

        return atomic_write_bytes(path, mask_png(arr, classes))  # a palette PNG: a viewer shows it
    return atomic_write_bytes(path, buffer.getvalue())


def predict(
    run_folder: str | os.PathLike[str],
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    network: str | int | None = None,
    analog: bool = False,
    drift_time: str | float | None = None,
    seed: int = 0,
    probabilities: bool = False,
    overlap: float | None = None,
    batch_size: int = 8,
    progress: Callable[[str], None] | None = None,
    overlay: bool = False,
    overwrite: bool = False,
    tile_size: int | None = None,
) -> list[Path]:
    """Segment image files or folders with a run's finalist and write label masks to `output`.

    Example: `popnas_seg.predict("logs/my_run", "new_images/", "masks_out/")`. Returns the written masks.
    Without `network`, the run's recommendation (final/recommendation.json) for digital or analog use; once the
    inputs are checked, the first `progress` line says which network runs, and how.
    An output that would replace an input is refused; an existing output file only with `overwrite`.
    """
    from popnas_seg.inference.outputs import check_outputs

    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    files = collect_inputs(items)
    check_outputs(files, output, probabilities, overwrite, overlay)  # before the network is loaded
    predictor = Predictor(
        run_folder,
        network,
        analog=analog,
        drift_time=drift_time,
        seed=seed,
        overlap=overlap,
        batch_size=batch_size,
        tile_size=tile_size,
    )
    return predictor.predict_files(
        files, output, probabilities=probabilities, progress=progress, overlay=overlay, overwrite=overwrite
    )
