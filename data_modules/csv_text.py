"""Open a CSV as UTF-8 text, or fail up front naming the first byte that is not UTF-8.

CSVs here are expected to be UTF-8 (a leading byte-order mark is accepted and dropped).
A Latin-1 or Windows-1252 file would otherwise fail with a bare ``UnicodeDecodeError``
somewhere in the middle of a long conversion, or, decoded with a guessed fallback, turn
``Besançon`` silently into ``BesanÃ§on``. So :func:`open_csv_text` first decodes the whole
file in 1 MiB chunks with an incremental decoder (one linear pass, constant memory) and
raises :class:`CsvEncodingError` with the byte offset and line of the first bad byte and
the command that re-encodes the file. No fallback encoding is guessed.

:func:`rows_or_errors` lets a caller skip and count a row the ``csv`` module rejects (a
field over ``csv.field_size_limit()``, 131,072 characters by default) instead of losing the
rest of the file: the reader goes on with the next line after such an error.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["CsvEncodingError", "check_utf8", "open_csv_text", "rows_or_errors"]


class CsvEncodingError(ValueError):
    """A CSV that is not UTF-8 text."""


def check_utf8(path: str | os.PathLike, chunk_size: int = 1 << 20) -> int:
    """Decode all of ``path`` as UTF-8; returns its number of lines, raises :class:`CsvEncodingError`."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes read before the current chunk
    lines = 0  # newlines in those bytes
    ends_with_newline = True
    with open(path, "rb") as f:
        while True:
            chunk = f.read(chunk_size)
            pending = len(decoder.getstate()[0])  # bytes of an unfinished character carried over
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exn:
                bad = offset - pending + exn.start
                # pending bytes hold no newline (a newline would have ended the character)
                line = lines + chunk[: max(bad - offset, 0)].count(b"\n") + 1
                raise CsvEncodingError(
                    f"{path}: not UTF-8 at byte offset {bad} (line {line}): {exn.object[exn.start:exn.end]!r} "
                    f"({exn.reason}). Tables must be UTF-8; re-encode it first, e.g. "
                    f"`iconv -f latin1 -t utf-8 {path} > {Path(path).with_suffix('.utf8.csv')}` for a Latin-1 file "
                    f"(`-f cp1252` for Windows-1252), and pass the new file."
                ) from None
            if not chunk:
                return lines + (0 if ends_with_newline else 1)
            offset += len(chunk)
            lines += chunk.count(b"\n")
            ends_with_newline = chunk.endswith(b"\n")


def open_csv_text(path: str | os.PathLike, check: bool = True) -> IO[str]:
    """``open(path)`` for ``csv`` (UTF-8, byte-order mark dropped, ``newline=""``), after :func:`check_utf8`.

    ``check=False`` skips the scan for a file the caller has just checked.
    """
    if check:
        check_utf8(path)
    return open(path, newline="", encoding="utf-8-sig")


def rows_or_errors(reader: csv.DictReader) -> Iterator[dict | csv.Error]:
    """The reader's rows, with the ``csv.Error`` in place of a row it rejects.

    After an error ``reader.reader.line_num`` is the line that failed (``reader.line_num``,
    the DictReader's own copy, only moves on success).
    """
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exn:
            yield exn
