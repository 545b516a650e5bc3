"""Tar shards written atomically: a shard appears under its final name only once complete.

``wds.ShardWriter`` writes ``train-000003.tar`` in place, so a crash, a kill or a full disk
leaves a truncated tar under a name that readers pick up. :class:`AtomicShardSink` writes
each shard to a hidden temporary file in the output folder
(``.train-000003.tar.XXXXXXXX.partial``), flushes and ``fsync``-s it, then ``os.replace``-s
it to ``{prefix}-%06d.tar`` as soon as it holds ``maxcount`` samples (or at ``close()``). A
shard is only opened when its first sample arrives, so no empty tar is left behind. When
the ``with`` block ends with an exception the open temporary file is deleted: the final
names only ever hold complete tars (the shards finished before the error stay).

:func:`check_output_dir` proves the folder is writable before any long work starts, and
:func:`write_text_atomic` gives the summary file the same all-or-nothing guarantee.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO

import webdataset as wds

from globe.output_files import OutputPathError, check_writable_dir, plain_file_mode

__all__ = ["AtomicShardSink", "OutputDirError", "check_output_dir", "write_text_atomic"]


class OutputDirError(OSError):
    """An output folder that cannot be created or written."""


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and write then delete a probe file in it; :class:`OutputDirError` if that fails."""
    try:
        return check_writable_dir(path, "output folder")
    except OutputPathError as exn:
        raise OutputDirError(f"{exn}; pass another --out or fix its permissions") from None


def _temp_file(final: Path) -> tuple[IO[bytes], str]:
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    return os.fdopen(fd, "wb"), tmp


def _publish(f: IO[bytes], tmp: str, final: Path) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.chmod(tmp, plain_file_mode())  # mkstemp creates 0600; give the permissions a plain open() would
    os.replace(tmp, final)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and ``os.replace``."""
    final = Path(path)
    f, tmp = _temp_file(final)
    try:
        f.write(text.encode("utf-8"))
        _publish(f, tmp, final)
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AtomicShardSink:
    """``with AtomicShardSink(out, "train", 1000) as sink: sink.write({"__key__": ..., "jpg": ..., "json": ...})``.

    ``names`` lists the published shards (file names, in order), ``published`` the samples in them.
    """

    def __init__(self, out: str | os.PathLike, prefix: str, maxcount: int) -> None:
        if maxcount < 1:
            raise ValueError(f"maxcount (samples per shard) must be >= 1, got {maxcount}")
        self.out, self.prefix, self.maxcount = Path(out), prefix, maxcount
        self.names: list[str] = []
        self.published = 0
        self._file: IO[bytes] | None = None
        self._tmp = ""
        self._tar: wds.TarWriter | None = None
        self._count = 0

    def _final(self) -> Path:
        return self.out / f"{self.prefix}-{len(self.names):06d}.tar"

    def write(self, sample: dict) -> None:
        if self._tar is None:
            self._file, self._tmp = _temp_file(self._final())
            self._tar = wds.TarWriter(self._file)
            self._count = 0
        self._tar.write(sample)
        self._count += 1
        if self._count >= self.maxcount:
            self._finish()

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()  # writes the end-of-archive blocks; the file object stays open
        final = self._final()
        _publish(self._file, self._tmp, final)  # type: ignore[arg-type]
        self.names.append(final.name)
        self.published += self._count
        self._tar = self._file = None

    def close(self) -> None:
        """Publish the last, partly filled shard."""
        self._finish()

    def abort(self) -> None:
        """Delete the shard being written (the published ones stay)."""
        if self._file is not None:
            with contextlib.suppress(Exception):  # close the tar stream now, or its __del__ writes to a closed file
                self._tar.close()  # type: ignore[union-attr]
            self._file.close()
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
        self._tar = self._file = None

    def __enter__(self) -> AtomicShardSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
