"""The command line that runs this tool again, as the user can paste it (resume hints, error messages).

`python run.py -r X` fails outside the virtual environment (the `python` on PATH lacks TensorFlow), so a
hint names the interpreter that is running now (`sys.executable`) and the script it ran, both as given, or
the installed `popnas-seg` entry point when that is how the tool was started.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

ENTRY_POINT = "popnas-seg"
_RUN_PY = Path(__file__).resolve().parent.parent / "run.py"


def tool_argv() -> list[str]:
    """argv prefix that starts this tool again: [python, run.py], [popnas-seg] or [python, <repo>/run.py]."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    name = Path(argv0).name
    if name == "run.py" and Path(argv0).is_file():
        return [sys.executable, argv0]
    if name == ENTRY_POINT and Path(argv0).is_file():
        return [argv0]
    if _RUN_PY.is_file():  # called from Python (a test, a notebook): the checkout's run.py
        return [sys.executable, str(_RUN_PY)]
    return [ENTRY_POINT]


def tool_command(*args: str | os.PathLike[str]) -> str:
    """The shell command (quoted where needed) that runs this tool with `args`, e.g. tool_command("-r", folder)."""
    return shlex.join([*tool_argv(), *(str(a) for a in args)])
