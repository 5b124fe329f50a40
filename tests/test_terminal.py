"""A terminal a person can read: third-party noise hidden by default (popnas_seg/quiet.py), shown on request,
and hints that print a command which works as printed (popnas_seg/command.py)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from popnas_seg import command

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import json, os, sys, warnings
import popnas_seg
from popnas_seg import quiet
out = {"tf_level": os.environ.get("TF_CPP_MIN_LOG_LEVEL")}
def harmless():
    warnings.warn_explicit("Using a non-tuple sequence for multidimensional indexing is deprecated", UserWarning,
                           "slice.py", 63, module="onnx2torch.node_converters.slice", registry={})
def caught():
    with warnings.catch_warnings(record=True) as seen:
        harmless()
        warnings.warn("a warning of ours", UserWarning)
    return [str(w.message)[:20] for w in seen]
out["default"] = caught()
if len(sys.argv) > 1:
    quiet.show_third_party()
    out["after_verbose"] = caught()
    out["tf_level_after_verbose"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    out["verbose_env"] = os.environ.get("POPNAS_SEG_VERBOSE")
print(json.dumps(out))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "POPNAS_SEG_VERBOSE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _probe(*args: str, **env: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(**env),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_import_hides_tensorflow_logs_and_harmless_warnings_but_keeps_ours() -> None:
    out = _probe()
    assert out["tf_level"] == "3", "TF_CPP_MIN_LOG_LEVEL 2 still lets E0000 ... use_unbounded_threadpool through"
    assert out["default"] == ["a warning of ours"]


def test_verbose_shows_everything_again_also_for_child_processes() -> None:
    out = _probe("verbose")
    assert out["after_verbose"] == ["Using a non-tuple se", "a warning of ours"]
    assert out["tf_level_after_verbose"] is None and out["verbose_env"] == "1"
    env_switch = _probe(POPNAS_SEG_VERBOSE="1")  # what a child process of a --verbose run sees
    assert env_switch["tf_level"] is None and len(env_switch["default"]) == 2


def test_a_log_level_the_user_chose_is_kept() -> None:
    assert _probe(TF_CPP_MIN_LOG_LEVEL="1")["tf_level"] == "1"


def test_python_api_imports_tensorflow_quietly() -> None:
    """`import popnas_seg` then TensorFlow (as `popnas_seg.predict` does): no absl / cpu_feature_guard lines."""
    proc = subprocess.run(
        [sys.executable, "-c", "import popnas_seg, tensorflow"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    noise = [
        line
        for line in proc.stderr.splitlines()
        if "cpu_feature_guard" in line or "absl::InitializeLog" in line or line[:5] in ("E0000", "I0000")
    ]
    assert not noise, noise


@pytest.mark.parametrize(
    "argv0,expected",
    [
        ("run.py", lambda d: [sys.executable, "run.py", "-r", d]),
        ("{bin}/popnas-seg", lambda d: ["{bin}/popnas-seg", "-r", d]),
        ("/usr/lib/python3/pytest", lambda d: [sys.executable, str(ROOT / "run.py"), "-r", d]),
    ],
)
def test_the_resume_command_names_this_interpreter_or_the_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv0: str, expected
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "popnas-seg").write_text("#!/bin/sh\n")
    monkeypatch.chdir(ROOT)  # run.py as given relative to the working folder, like `python run.py`
    argv0 = argv0.format(bin=tmp_path / "bin")
    monkeypatch.setattr(sys, "argv", [argv0, "-j", "x.json"])
    folder = "logs/my run"
    want = [part.format(bin=tmp_path / "bin") for part in expected(folder)]
    assert shlex.split(command.tool_command("-r", folder)) == want
