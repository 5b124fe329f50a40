"""What several benchmarks share: the repository root, the results log, the command line that reproduces a
result, the machine it ran on, and replacing one section of the log."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from popnas_seg.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
# The chronological log the benchmarks write their sections into; docs/BENCHMARKS.md holds the summary table.
RESULTS_LOG = ROOT / "docs" / "benchmarks_log.md"


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this invocation: `python -m <module> <args>` (from the repository root)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(shlex.quote(a) for a in ["python", "-m", module, *args])


def machine() -> str:
    """`<cores>-core CPU (<model>)`, as the log's sections name the machine a result comes from."""
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    model = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            model = line.split(":", 1)[1].strip()
    return f"{cores}-core CPU ({model or 'unknown model'})"


def write_section(doc: Path, body: str, section: str) -> None:
    """Replace the section `section` of the log (up to the next `## ` heading), keeping the others."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    lines = text.splitlines()
    try:
        start = lines.index(section)
    except ValueError:
        new = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "\n".join(lines[end:])
        new = "\n".join(lines[:start]).rstrip("\n") + ("\n\n" if start else "") + body.rstrip("\n") + "\n"
        if rest:
            new += "\n" + rest.rstrip("\n") + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(doc, new)
