"""Image file of a CSV id, kept inside its image folder.

IDs come from untrusted CSVs. An id is turned into a path only when it names a file *inside*
the folder; otherwise :class:`UnsafeIdError` says why, and callers skip and count the row
(reason ``unsafe_id``) instead of reading ``/etc/passwd`` or a link that points elsewhere.

Checks, in order (each linear in the id's length):

1. the id is not empty and holds no NUL or backslash (a Windows separator here would make
   a name that means a different path there);
2. it is relative (no leading ``/``); with ``subfolders=False`` (IM2GPS3K: plain file
   names) it holds no ``/`` at all, with ``subfolders=True`` (MP-16: ``a1/1001.jpg``) no
   part is empty, ``.`` or ``..``;
3. containment: ``folder / id`` with every symbolic link resolved must lie strictly inside
   the resolved folder (this catches a link inside the folder that leads out of it).

An id without a file suffix gets ``default_suffix`` appended (``a1/1001`` -> ``a1/1001.jpg``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["UnsafeIdError", "image_path"]


class UnsafeIdError(ValueError):
    """A file id that does not name a file inside its folder."""


def image_path(folder: str | os.PathLike, img_id: str, subfolders: bool = False, default_suffix: str = ".jpg") -> Path:
    """The resolved path of ``img_id`` inside ``folder``; :class:`UnsafeIdError` if it would leave it.

    >>> image_path("/data/img", "a1/1001", subfolders=True).name
    '1001.jpg'
    >>> image_path("/data/img", "../x.jpg")
    Traceback (most recent call last):
    ...
    data_modules.image_paths.UnsafeIdError: id '../x.jpg' holds a path separator (plain file names only)
    """
    shown = repr(img_id if len(img_id) <= 80 else img_id[:80] + "...")
    if not img_id:
        raise UnsafeIdError("empty id")
    if "\0" in img_id or "\\" in img_id:
        raise UnsafeIdError(f"id {shown} holds a NUL or backslash")
    if img_id.startswith("/"):
        raise UnsafeIdError(f"id {shown} is an absolute path")
    parts = img_id.split("/")
    if not subfolders and len(parts) > 1:
        raise UnsafeIdError(f"id {shown} holds a path separator (plain file names only)")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeIdError(f"id {shown} has an empty, '.' or '..' part")
    if not Path(parts[-1]).suffix:
        img_id += default_suffix
    root = _real_folder(os.path.abspath(folder))
    path = os.path.realpath(os.path.join(root, img_id))  # follows symbolic links, also those inside the folder
    if not path.startswith(root if root.endswith(os.sep) else root + os.sep):
        raise UnsafeIdError(f"id {shown} resolves to {path}, outside {root}")
    return Path(path)


@functools.lru_cache(maxsize=64)
def _real_folder(absolute: str) -> str:
    return os.path.realpath(absolute)  # once per folder: a CSV names it for millions of rows
