"""Where `predict` writes, checked before any work: it never writes over an input, nor over anything else
unless asked to.

A mask keeps its input's name, so `--output` naming the input folder would replace every image by its mask
(reproduced: "2 mask(s) written", both PNGs gone). Paths are compared resolved (symbolic links followed) and,
for files that exist, by device and inode (hard links, case-insensitive file systems).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from popnas_seg.errors import UserError
from popnas_seg.inference.masks import OVERLAY_SUFFIX


@dataclass(frozen=True)
class Outputs:
    """The files `predict` writes for one input: its mask, and optionally probabilities and an overlay."""

    mask: Path
    probabilities: Path | None = None
    overlay: Path | None = None

    def paths(self) -> list[Path]:
        return [p for p in (self.mask, self.probabilities, self.overlay) if p is not None]


def planned_outputs(
    files: Sequence[Path], out_dir: Path, probabilities: bool = False, overlay: bool = False
) -> list[Outputs]:
    """The outputs of each input file, in input order: `<name>` (the mask, in the input's format),
    `<stem>.probs.npy` and `<stem>.overlay.png` under `out_dir`."""
    return [
        Outputs(
            out_dir / f.name,
            out_dir / f"{f.stem}.probs.npy" if probabilities else None,
            out_dir / f"{f.stem}{OVERLAY_SUFFIX}" if overlay else None,
        )
        for f in files
    ]


def check_outputs(
    files: Sequence[Path],
    output: str | os.PathLike[str],
    probabilities: bool = False,
    overwrite: bool = False,
    overlay: bool = False,
) -> list[Outputs]:
    """The planned outputs, or a `UserError` before anything is read or written when one would destroy data.

    Refused always: the output folder is the folder of an input; an output resolves to an input file; two
    outputs are one file. Refused unless `overwrite`: an output file already exists.
    """
    out_dir = Path(output).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--output {out_dir} exists and is not a folder")
    out_real = _real(out_dir)
    for f in files:
        if _real(f.parent) == out_real:
            raise UserError(
                f"--output {output} is the folder of the input {f}: the masks (same names as the "
                f"inputs) would replace the images; choose another output folder"
            )
    inputs = {_real(f): f for f in files}
    plan = planned_outputs(files, out_dir, probabilities, overlay)
    seen: dict[Path, Path] = {}
    for target in (p for outputs in plan for p in outputs.paths()):
        real = _real(target)
        source = inputs.get(real) or next((f for f in files if _same_file(f, target)), None)
        if source is not None:
            raise UserError(f"output {target} would overwrite the input {source}; choose another output folder")
        if real in seen:
            raise UserError(
                f"two outputs would be the same file {target} (inputs with the same stem); predict "
                f"them into separate folders"
            )
        seen[real] = target
        if not overwrite and (target.exists() or target.is_symlink()):
            raise UserError(
                f"output {target} already exists; pass --overwrite to replace it, or choose an empty output folder"
            )
    _check_writable(out_dir)
    return plan


def _check_writable(out_dir: Path) -> None:
    """A read-only or foreign output folder is found now, not after the network has run."""
    existing = out_dir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to --output {out_dir}: {existing} is not writable")


def write_failed(path: Path, exc: OSError) -> UserError:
    """A failed write (read-only file system, disk full, permission) as the one-line user error."""
    reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
    return UserError(f"cannot write {path}: {reason}{hint}")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False
