"""Output files written safely: checked before the long work starts, replaced atomically.

- ``check_writable_file(path)`` / ``check_writable_dir(path)`` fail fast with a clear message
  (a directory where a file should be, no permission, a read-only file system) instead of after
  an hour of evaluation. They create the parent directory and write then remove a probe file.
- ``atomic_writer(path)`` yields a text file in the same directory under a temporary name and
  ``os.replace``-s it over ``path`` only once it is complete: a crash, a full disk or a kill
  leaves the previous file (or none), never a truncated one. The file gets the permissions a
  plain ``open()`` would give (``plain_file_mode()``: 0666 less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["OutputPathError", "atomic_writer", "check_writable_dir", "check_writable_file", "plain_file_mode"]


class OutputPathError(OSError):
    """An output path that cannot be written."""


def check_writable_dir(path: str | os.PathLike, what: str = "output directory") -> Path:
    """Create ``path`` if needed and prove a file can be written in it."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise OutputPathError(f"{what} {directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exn:
        raise OutputPathError(f"{what} {directory} is not writable ({exn.strerror or exn})") from exn
    return directory


def check_writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """``path`` can be (re)written: it is not a directory and its directory is writable."""
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(f"{what} {target} is a directory")
    if target.exists() and not os.access(target, os.W_OK):
        # os.replace would still succeed in a writable directory; refuse what the user protected
        raise OutputPathError(f"{what} {target} exists and is read-only")
    check_writable_dir(target.parent if str(target.parent) else Path("."), f"directory of the {what}")
    return target


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: do it once, restore at once
    os.umask(mask)
    return mask


def plain_file_mode() -> int:
    """The mode ``open(path, "w")`` creates files with: 0666 less the process umask."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, newline: str | None = None, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """``with atomic_writer(p) as f: f.write(...)``: ``p`` appears complete or not at all."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline=newline, encoding=encoding, errors="backslashreplace") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, plain_file_mode())  # mkstemp creates 0600
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
