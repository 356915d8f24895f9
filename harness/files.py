"""Writing a file so that a reader sees the old version or the new one, never a part.

Standard library only: the worker imports it too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically"]


def write_atomically(path: Path | str, content: bytes | str | Callable[[BinaryIO], object],
                     mode: int = 0o644) -> Path:
    """Write `content` (bytes, UTF-8 text, or a function that writes to a binary file) to
    a hidden temporary file beside `path`, then rename it over `path`; return `path`.

    A rename within one folder is atomic, so concurrent readers, a killed writer and a
    full disk leave either the old file or the new one. The temporary file is removed on
    any failure, and OSError propagates for the caller to word.
    """
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        # mkstemp makes 0600; what we write is an ordinary file of the user's.
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
