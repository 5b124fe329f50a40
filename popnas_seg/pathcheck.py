"""Why a path the user gave is not a usable folder, in words that point at the real problem.

`Path.is_dir()` is False for a missing path, a plain file and a symbolic link that loops or dangles alike;
saying "does not exist" for all three sends the user looking for the wrong mistake.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def not_a_folder_reason(path: str | os.PathLike[str]) -> str | None:
    """None if `path` is a folder (following links); else a short phrase such as "is a file, not a folder"."""
    p = Path(path)
    try:
        if p.is_dir():
            return None
    except OSError:  # e.g. a path component without search permission
        pass
    if p.is_symlink():
        try:
            p.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            return "is a symbolic link that loops back on itself"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symbolic link that loops back on itself"
            return "is a symbolic link to something that does not exist"
        return "is a symbolic link to a file, not a folder"
    if p.exists():
        return "is a file, not a folder"
    return "does not exist"
