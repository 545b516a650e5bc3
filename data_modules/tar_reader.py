"""Pipeline stage: shard urls -> WebDataset records, with exact reports of broken tars.

Equivalent to ``wds.tarfile_to_samples`` (``wds.gopen`` opens the url, members are grouped
into records by ``base_plus_ext`` exactly as WebDataset does), except for errors: a
truncated or unreadable tar is reported once, with the url and the member being read
(``shard.tar:key.json``), the incomplete record at the break is dropped, and the stream goes
on with the next shard. (``wds.tarfile_to_samples`` with a handler reports such a tar twice,
without the member, because the tar iterator and the shard expander both catch it.)
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Iterator

import webdataset as wds
from webdataset.tariterators import base_plus_ext

__all__ = ["tar_records"]

OnError = Callable[[str, str], None]  # (key, detail)


def tar_records(sources: Iterable[dict], on_error: OnError) -> Iterator[dict]:
    """Yield ``{"__key__", "__url__", ext: bytes, ...}`` for every sample of every ``{"url": ...}``."""
    for source in sources:
        url = source["url"]
        member = "<open>"
        record: dict | None = None
        try:
            with wds.gopen(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
                member = "<header>"
                for info in tar:
                    member = info.name
                    if not info.isreg():
                        continue
                    prefix, suffix = base_plus_ext(info.name)
                    if prefix is None or prefix.startswith("__"):  # no extension, or tar metadata
                        continue
                    if record is not None and record["__key__"] != prefix:
                        yield record  # complete: the next key has started
                        record = None
                    data = tar.extractfile(info).read()  # type: ignore[union-attr]
                    tar.members = []  # streaming: do not keep every TarInfo
                    if record is None:
                        record = {"__key__": prefix, "__url__": url}
                    record[suffix.lower()] = data
                    member = "<header>"
            if record is not None:
                yield record
        except (tarfile.TarError, OSError, EOFError, ValueError) as exn:
            on_error(f"{url}:{member}", f"{type(exn).__name__}: {exn}")
