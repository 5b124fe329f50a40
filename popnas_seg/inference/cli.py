"""`python run.py predict` (and `popnas-seg predict`): segment new images with a run's finalist.

    python run.py predict -r logs/NAME --input new_images/ --output masks/ [--network ID]
                          [--probabilities] [--overlay] [--analog --drift-time 1month --seed 0]

Exit codes as the main CLI: 0 done, 2 user error (one `error: ...` line), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py predict",
        description="Segment images of any size with a network found by a run (whole, or in "
        "overlapping tiles of inference.tile_size; the training preprocessing). Writes label masks "
        "with the input names.",
    )
    parser.add_argument("-r", "--run", required=True, metavar="FOLDER", help="the run folder (logs/NAME)")
    parser.add_argument(
        "--network",
        metavar="ID",
        help="finalist to use: a folder name under final/ (default: the run's recommendation for "
        "digital or, with --analog, analog use: final/recommendation.json)",
    )
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH", help="image files and/or folders")
    parser.add_argument("--output", required=True, metavar="FOLDER", help="where the label masks are written")
    parser.add_argument(
        "--overlay",
        action="store_true",
        help="also write <name>.overlay.png: the image with the predicted mask drawn on it",
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <name>.probs.npy: softmax probabilities [H, W, classes] float32",
    )
    parser.add_argument(
        "--analog",
        action="store_true",
        help="run the analog (AIHWKit) network instead: hardware-aware checkpoint if any",
    )
    parser.add_argument(
        "--drift-time",
        default=None,
        metavar="T",
        help="analog drift time: seconds or e.g. 1h, 1d, 1month, 1y (default: the horizon of the "
        "analog recommendation; with --network, analog.t_inference)",
    )
    parser.add_argument("--seed", type=int, default=0, help="analog programming seed (default 0)")
    parser.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="tile overlap, a fraction of the training crop (default: the run's inference.overlap, 0.25)",
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        metavar="PX",
        help="largest tile side: images up to it are segmented whole (default: the run's "
        "inference.tile_size, 256; 0: tiles of the training crop)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        help="training-crop-sized tiles per forward pass; larger tiles go fewer at a time (default 8)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace output files that already exist (never the inputs themselves)"
    )
    return parser


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 tiles per pass would never finish)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" not in sys.modules:  # the saved Keras models are TensorFlow-backend models
        os.environ["KERAS_BACKEND"] = "tensorflow"
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from popnas_seg.errors import UserError

    try:
        if args.drift_time is not None and not args.analog:
            raise UserError("--drift-time applies to --analog only")
        from popnas_seg.inference.predictor import predict

        written = predict(
            args.run,
            args.input,
            args.output,
            network=args.network,
            analog=args.analog,
            drift_time=args.drift_time,
            seed=args.seed,
            probabilities=args.probabilities,
            overlap=args.overlap,
            batch_size=args.batch_size,
            tile_size=args.tile_size,
            overlay=args.overlay,
            overwrite=args.overwrite,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        print(f"{len(written)} mask(s) written to {args.output}", file=sys.stderr)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
