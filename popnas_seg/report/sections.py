"""The sections of report.md, each read from the run folder's files alone.

One class because every section reads the same loaded config, state and search results; the sections' order
and the rule that one failing section does not cost the report live in report/__init__.py.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from popnas_seg.analog.probe import ROBUSTNESS_MIN_DIGITAL_DICE
from popnas_seg.plots import load_results, measured_front_ids, time_label
from popnas_seg.predictors.quality import MIN_RANK_POINTS
from popnas_seg.report.markdown import duration, fmt, image_link, plus_minus, table
from popnas_seg.runlog.events import Event, FinalistsSelected, SearchFinished
from popnas_seg.runlog.tables import read_csv

# Layers that never map to analog tiles in this stack (STACK.md, ANALOG_FACTS.md): stated in every report.
ALWAYS_DIGITAL = (
    "biases of analog layers (aihwkit `digital_bias`), batch normalisation, activations (swish, softmax), "
    "pooling, bilinear upsampling, concatenation and additions",
    "transpose convolutions (`tconv2` / `tconv4` decoder upsampling): aihwkit has no analog ConvTranspose",
    "grouped / depthwise convolutions (`dconv` operators): aihwkit rejects groups != 1",
    "dense layers exported as MatMul + Add rather than Gemm",
)


HWA_LABELS = {"before": "no HWA", "control": "digital control", "after": "HWA"}


class Report:
    """Collects the sections; each section is a method that returns markdown."""

    def __init__(self, run_path: Path, log: logging.Logger) -> None:
        self.path = run_path
        self.log = log
        self.config = self._json(run_path / "restore" / "config.json")
        self.state = self._json(run_path / "restore" / "state.json")
        self.results = load_results(run_path)

    @staticmethod
    def _json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _drift_report(path: Path) -> Any:
        """final/<id>/drift_report.json as a DriftReport; None when unreadable (the report still renders)."""
        from popnas_seg.analog.drift import DriftReport

        try:
            return DriftReport.load(path)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _events(self, kind: type[Event]) -> list[dict[str, Any]]:
        path = self.path / "restore" / "journal.jsonl"
        if not path.exists():
            return []
        try:
            from popnas_seg.runlog.journal import Journal

            return Journal(path).events(kind)
        except Exception as exc:  # a damaged journal must not stop the report
            self.log.warning("report: cannot read the journal (%s)", exc)
            return []

    # ------------------------------------------------------------------ sections
    def header(self) -> str:
        stage = self.state.get("stage", "unknown")
        return (
            f"# popnas-seg run `{self.path.name}`\n\n"
            f"Stage reached: **{stage}** (restore/state.json, updated {self.state.get('updated_at', '?')})."
        )

    def recommendation_section(self) -> str:
        from popnas_seg.finalists.recommendation import recommendation_markdown, write_recommendation

        return recommendation_markdown(write_recommendation(self.path), _shown_path(self.path))

    def config_section(self) -> str:
        if not self.config:
            return "## Configuration (appendix)\n\nrestore/config.json is missing or unreadable."
        return (
            "## Configuration (appendix)\n\nThe frozen, validated config (restore/config.json):\n\n```json\n"
            + json.dumps(self.config, indent=2, sort_keys=False)
            + "\n```"
        )

    def _size_buckets(self) -> str:
        """Beside the hypervolume: the best Dice and analog Dice a user limited to each size can pick."""
        from popnas_seg.search.user_region import bucket_bests

        rows = bucket_bests([r for r in self.results if r.status == "ok"])
        return "Best measured network per size bucket (params <= the bound):\n\n" + table(
            ["params <=", "networks", "best Dice", "best analog Dice"],
            [[f"{r['bucket']:,}", r["networks"], fmt(r["best_dice"]), fmt(r["best_analog_dice"])] for r in rows],
        )

    def search_section(self) -> str:
        out = ["## Search"]
        if not self.results:
            out.append("The search stage has not produced results yet (csv/training_results.csv is missing).")
            return "\n\n".join(out)
        ok = [r for r in self.results if r.status == "ok"]
        failed = len(self.results) - len(ok)
        total = sum(r.train_time_s or 0.0 for r in self.results)
        strategy = (self.config.get("search_strategy") or {}).get("strategy", "?")
        best = max(ok, key=lambda r: r.dice, default=None)
        probed = [r for r in ok if r.analog_dice is not None]
        lines = [
            f"- strategy: **{strategy}**",
            f"- networks trained: **{len(self.results)}** ({len(ok)} ok, {failed} failed or NaN)",
            f"- total training time: **{duration(total)}** ({total:.1f} s)",
        ]
        if best is not None:
            lines.append(
                f"- best validation Dice: **{best.dice:.3f}** (network {best.network_id}, {best.params:,} params)"
            )
        if probed:
            ab = max(probed, key=lambda r: r.analog_dice or 0.0)
            lines.append(
                f"- best analog Dice at the probe time: **{ab.analog_dice:.3f}** (network "
                f"{ab.network_id}); {len(probed)} networks probed"
            )
            rs = max(probed, key=lambda r: r.analog_objective or 0.0)  # what the search ranked on (issue 34)
            lines.append(
                f"- best risk-aware analog score (mean - k x std over programmings): "
                f"**{rs.analog_objective:.3f}** (network {rs.network_id}, {rs.params:,} params)"
            )
        if self._events(SearchFinished):
            lines.append("- the search finished")
        else:
            lines.append("- the search has **not finished** (figures and tables show the state so far)")
        out.append("\n".join(lines))

        integrity = read_csv(self.path / "csv" / "probe_integrity.csv")
        if integrity:
            failed_probes = sum(r.get("status") == "failed" for r in integrity)
            mismatched = sum(r.get("status") == "mismatch" for r in integrity)
            out.append(
                f"Analog probe integrity (csv/probe_integrity.csv): {failed_probes} of {len(integrity)} probes "
                f"failed; {mismatched} converted torch networks differ from Keras by more than 0.01 digital "
                "Dice on the probe images."
            )
        progress = read_csv(self.path / "csv" / "search_progress.csv")
        if progress:
            out.append(
                "### Hypervolume per step\n\nHypervolume of the measured front in the region users care "
                "about (search/user_region.py), normalised to [0, 1]: params on a log10 axis from 1 up to the "
                "run's U-Net's params (a larger network adds nothing), Dice and analog Dice from the floors of "
                "`search_strategy.hypervolume_reference` (else 0) up to 1.\n\n"
                + table(
                    ["step", "networks trained", "hypervolume", "best Dice", "best analog Dice", "front size"],
                    [
                        [
                            r.get("step"),
                            r.get("networks_trained"),
                            fmt(r.get("hypervolume"), 4),
                            fmt(r.get("best_dice")),
                            fmt(r.get("best_analog_dice")),
                            r.get("front_size", "-"),
                        ]
                        for r in progress
                    ],
                )
            )
            out.append(image_link(self.path, "plots/hypervolume.png", "hypervolume vs networks trained"))
            out.append(self._size_buckets())
        quality = read_csv(self.path / "csv" / "predictor_quality.csv")
        if quality:
            out.append(
                "### Predictor quality\n\nRank correlation between predicted and measured values of the "
                "networks trained at each step (MAPE only for time). Below "
                f'{MIN_RANK_POINTS} networks no correlation is given ("too few networks"): with 2 Spearman '
                "can only be ±1, with 3 only ±1 or ±0.5.\n\n"
                + table(
                    ["step", "objective", "n", "Spearman", "Kendall", "MAPE"],
                    [
                        [r.get("step"), r.get("objective"), r.get("n"), *_rank_cells(r), fmt(r.get("mape"))]
                        for r in quality
                    ],
                )
            )
            steps = sorted({str(r.get("step")) for r in quality}, key=lambda s: int(float(s)))
            out.append(
                "\n".join(
                    image_link(self.path, f"plots/predicted_vs_measured_b{s}.png", f"predicted vs measured, step {s}")
                    for s in steps
                )
            )
        else:
            out.append(
                "### Predictor quality\n\nNo predictor quality recorded (csv/predictor_quality.csv missing: "
                "no step was predicted yet, or the strategy uses no predictors)."
            )
        return "\n\n".join(out)

    def front_section(self) -> str:
        out = ["## Final measured Pareto front"]
        if not self.results:
            out.append("No front: the search has not produced results.")
            return "\n\n".join(out)
        ids = set(measured_front_ids(self.path, self.results))
        front = sorted((r for r in self.results if r.network_id in ids), key=lambda r: -r.dice)
        out.append(f"{len(front)} non-dominated networks out of {sum(r.status == 'ok' for r in self.results)}.")
        out.append(
            table(
                ["id", "cell", "Dice", "mIoU", "analog Dice", "analog/digital", "params", "FLOPs", "analog coverage"],
                [
                    [
                        r.network_id,
                        f"`{r.encoding}`",
                        fmt(r.dice),
                        fmt(r.miou),
                        plus_minus(r.analog_dice, r.analog_dice_std),
                        _ratio(r),
                        f"{r.params:,}",
                        f"{r.flops:,}",
                        fmt(r.analog_coverage),
                    ]
                    for r in front
                ],
            )
        )
        if any(r.analog_dice is not None and r.dice < ROBUSTNESS_MIN_DIGITAL_DICE for r in front):
            out.append(
                f"analog/digital is not given where the digital Dice is below {ROBUSTNESS_MIN_DIGITAL_DICE:g}: "
                "such a network segments (almost) nothing, and the ratio of two near-zero Dice values is "
                "noise, not robustness."
            )
        out.append(image_link(self.path, "plots/front_projections.png", "measured front projections"))
        out.append(image_link(self.path, "plots/dice_params_analog.png", "Dice vs params coloured by analog Dice"))
        out.append(image_link(self.path, "plots/front_operators.png", "operator frequency in the front"))
        return "\n\n".join(out)

    def finalists_section(self) -> str:
        out = ["## Finalists"]
        rows = read_csv(self.path / "final" / "finalists.csv")
        selected = self._events(FinalistsSelected)
        if selected:
            e = selected[-1]
            out.append(
                f"Selection rule **{e.get('rule')}** over objectives {e.get('objectives')}: networks "
                + ", ".join(str(c.get("network_id")) for c in e.get("candidates", []))
                + "."
                + (f" Small finalist: at most {e['max_params']:,} params." if e.get("max_params") else "")
            )
        selection = read_csv(self.path / "final" / "model_selection.csv")
        if selection:
            out.append(
                "### Model selection\n\n"
                + table(
                    ["variant", "filters", "motifs", "val Dice", "params", "epochs", "train time (s)", "chosen"],
                    [
                        [
                            r.get("variant"),
                            r.get("filters"),
                            r.get("motifs"),
                            fmt(r.get("dice")),
                            fmt(r.get("params"), 0),
                            r.get("epochs"),
                            fmt(r.get("train_time_s"), 1),
                            r.get("chosen"),
                        ]
                        for r in selection
                    ],
                )
            )
        if not rows:
            out.append("The finalists stage has not run (final/finalists.csv is missing).")
            return "\n\n".join(out)
        times = self._drift_times()
        drift = read_csv(self.path / "final" / "drift.csv")
        phase = "after" if any(d["hwa"] == "after" for d in drift) else "before"  # hwa_epochs 0: no HWA curve
        tag = "HWA" if phase == "after" else "no HWA"
        headers = ["network", "test Dice", "test mIoU"]
        headers += [f"analog Dice {time_label(t)} ({tag})" for t in times]
        headers += ["params", "FLOPs", "analog coverage", "latency (ms/img)", "export check"]
        table_rows = []
        for r in rows:
            cells = [r.get("network"), fmt(r.get("test_dice")), fmt(r.get("test_miou"))]
            for t in times:
                hit = [
                    d
                    for d in drift
                    if d["network"] == r.get("network") and d["hwa"] == phase and math.isclose(float(d["time"]), t)
                ]
                cells.append(plus_minus(hit[0]["mean"], hit[0]["std"]) if hit else "-")
            eq = r.get("export_equivalent")
            check = "-" if eq in (None, "") else ("ok" if str(eq) == "True" else "**FAILED**")
            cells += [
                fmt(r.get("params"), 0),
                fmt(r.get("flops"), 0),
                fmt(r.get("analog_coverage")),
                fmt(r.get("latency_ms")),
                check,
            ]
            table_rows.append(cells)
        out.append(
            f"Digital Dice/mIoU on the test split, on whole images (each test image segmented by overlapping "
            "tiles of the training crop, as `predict` does, not one centre crop); analog Dice on the same whole "
            f"images ({tag}: {'after' if phase == 'after' else 'without'}"
            " hardware-aware training), mean ± std "
            "over independent programmings; latency is Keras inference per image on this machine. "
            "`unet` is the U-Net baseline trained with the same budget.\n\n" + table(headers, table_rows)
        )
        if drift:
            out.append(
                "### Drift: no HWA, digital control, HWA\n\n"
                "Per network and time: the converted network as trained (no HWA), the digital fine-tune "
                "control (the same epochs, schedule and checkpoint rule as HWA, plain SGD) and HWA. HWA helps "
                "where it beats both other rows.\n\n"
                + table(
                    ["network", "weights", "time", "analog Dice (mean ± std)"],
                    [
                        [
                            d["network"],
                            HWA_LABELS.get(str(d["hwa"]), d["hwa"]),
                            time_label(float(d["time"])),
                            plus_minus(d["mean"], d["std"]),
                        ]
                        for d in drift
                    ],
                )
            )
        return "\n\n".join(out)

    def _drift_times(self) -> list[float]:
        drift = read_csv(self.path / "final" / "drift.csv")
        return sorted({float(d["time"]) for d in drift})

    def plots_section(self) -> str:
        return (
            "## Learning curves, drift curves and sample predictions\n\n"
            + image_link(
                self.path,
                "plots/learning_curves.png",
                "final training: validation and training Dice per epoch, finalists and U-Net",
            )
            + "\n\n"
            + image_link(self.path, "plots/drift_curves.png", "analog Dice vs time, finalists and U-Net")
            + "\n\n"
            + image_link(
                self.path,
                "plots/finalists_size_analog.png",
                "params vs analog Dice at the probe horizon, finalists and U-Net",
            )
            + "\n\n"
            + image_link(self.path, "plots/sample_predictions.png", "sample predictions: digital vs analog")
        )

    def digital_section(self) -> str:
        out = ["## What stayed digital"]
        out.append("Always digital in this stack:\n\n" + "\n".join(f"- {n}" for n in ALWAYS_DIGITAL))
        per_net = []
        for folder in sorted((self.path / "final").glob("*/drift_report.json")):
            report = self._drift_report(folder)
            cov = None if report is None else report.coverage
            if cov:
                layers = [_layer_text(x) for x in cov.get("digital_layers") or []]
                listed = ", ".join(layers[:12]) + (f" ... ({len(layers)} in all)" if len(layers) > 12 else "")
                per_net.append(
                    [
                        folder.parent.name,
                        fmt(cov.get("weights_analog_fraction")),
                        fmt(cov.get("macs_analog_fraction")),
                        listed or "none",
                    ]
                )
        if per_net:
            out.append(
                "Per finalist (fractions of weights and multiply-accumulates on analog tiles, and the weight "
                "layers left digital):\n\n"
                + table(["network", "analog weight fraction", "analog MAC fraction", "digital weight layers"], per_net)
            )
        probed = [r for r in self.results if r.analog_coverage is not None]
        if probed:
            low = [float(r.analog_coverage or 0.0) for r in probed if (r.analog_coverage or 0.0) < 0.999]
            out.append(
                f"In the search, {len(probed)} networks were probed; {len(low)} ran some weights digitally "
                f"(analog coverage below 100%)" + (f", lowest {min(low):.3f}." if low else ".")
            )
        if not per_net and not probed:
            out.append("No analog evaluation has run yet, so no per-network coverage is available.")
        return "\n\n".join(out)


def _rank_cells(row: dict[str, Any]) -> list[str]:
    """Spearman and Kendall of a predictor_quality.csv row, or "too few networks" below MIN_RANK_POINTS."""
    try:
        n = int(float(row.get("n") or 0))
    except (TypeError, ValueError):
        n = 0
    if n < MIN_RANK_POINTS:
        return [f"too few networks (n < {MIN_RANK_POINTS})", "-"]
    return [fmt(row.get("spearman")), fmt(row.get("kendall"))]


def _ratio(r: Any) -> str:
    """analog/digital of a front row; "n/a" below the digital-Dice floor (also for runs written before it)."""
    if r.analog_dice is not None and r.dice is not None and r.dice < ROBUSTNESS_MIN_DIGITAL_DICE:
        return f"n/a (digital < {ROBUSTNESS_MIN_DIGITAL_DICE:g})"
    return fmt(r.robustness, 2)


def _shown_path(path: Path) -> str:
    """The run folder as a user would type it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _layer_text(layer: Any) -> str:
    """A digital layer from analog_coverage(): `name` (type: reason), or a plain name."""
    if isinstance(layer, dict):
        detail = ", ".join(str(layer[k]) for k in ("type", "reason") if layer.get(k))
        return f"`{layer.get('name', '?')}`" + (f" ({detail})" if detail else "")
    return f"`{layer}`"
