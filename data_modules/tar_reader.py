"""Pipeline stage: shard urls -> WebDataset records, with exact reports of broken tars.

Equivalent to ``wds.tarfile_to_samples`` (``wds.gopen`` opens the url, members are grouped
into records by ``base_plus_ext`` exactly as WebDataset does), except for errors: a
truncated or unreadable tar is reported once, with the url and the member being read
(``shard.tar:key.json``), the incomplete record at the break is dropped, and the stream goes
on with the next shard. (``wds.tarfile_to_samples`` with a handler reports such a tar twice,
without the member, because the tar iterator and the shard expander both catch it.)

Members are bounded by their tar header's size *before* they are read (a hostile shard may
hold a multi-GB member): a ``.json`` over ``decode.MAX_JSON_BYTES``, or any other member that
would take the sample's non-JSON members over ``MAX_MEMBER_BYTES`` (one image, normally), is
not read, nor are the later members of its sample. The record is
still yielded, with ``__skip__ = (reason, message)`` and no data, and
``decode.sample_from_record`` turns that into the ``SampleError`` the stream counts:
``bad_json`` ("json_too_large") for the JSON, ``corrupt_image`` ("image_too_large") for an
image, ``bad_value`` ("member_too_large") for anything else. The shard goes on with the next
sample; in streaming mode (``r|*``) ``tarfile`` reads past the unread bytes in fixed-size
blocks, so they never sit in memory.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterable, Iterator

import webdataset as wds
from webdataset.tariterators import base_plus_ext

from .decode import IMAGE_EXTENSIONS, MAX_JSON_BYTES

__all__ = ["MAX_MEMBER_BYTES", "tar_records"]

OnError = Callable[[str, str], None]  # (key, detail)

# Any member but the .json (which has decode.MAX_JSON_BYTES). MP-16 photos are well under
# 1 MiB; a 100-megapixel JPEG is ~30 MB. Larger is treated as hostile and not read.
MAX_MEMBER_BYTES = 64 << 20


def _oversize(name: str, suffix: str, size: int, held: int) -> tuple[str, str] | None:
    """``(reason, message)`` when the header says the member is too large to read, else None.

    ``held``: bytes of the sample's non-JSON members already read (a hostile tar may give one
    key many suffixes, ``k.a.jpg``, ``k.b.jpg``, ...).
    """
    # module globals read at call time, so a test can lower them
    total, limit = (size, MAX_JSON_BYTES) if suffix == "json" else (held + size, MAX_MEMBER_BYTES)
    if total <= limit:
        return None
    if suffix == "json":
        reason, what = "bad_json", "json"
    elif suffix in IMAGE_EXTENSIONS:
        reason, what = "corrupt_image", "image"
    else:
        reason, what = "bad_value", "member"
    others = "" if size > limit else f" (with the sample's other members: {total})"
    return reason, f"{what}_too_large: {name} is {size} bytes{others} > {limit} (not read)"


def tar_records(sources: Iterable[dict], on_error: OnError) -> Iterator[dict]:
    """Yield ``{"__key__", "__url__", ext: bytes, ...}`` for every sample of every ``{"url": ...}``."""
    for source in sources:
        url = source["url"]
        member = "<open>"
        record: dict | None = None
        held = 0  # bytes of the record's non-JSON members
        try:
            with wds.gopen(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
                member = "<header>"
                for info in tar:
                    tar.members = []  # streaming: do not keep every TarInfo
                    member = info.name
                    if not info.isreg():
                        continue
                    prefix, suffix = base_plus_ext(info.name)
                    if prefix is None or prefix.startswith("__"):  # no extension, or tar metadata
                        continue
                    if record is not None and record["__key__"] != prefix:
                        yield record  # complete: the next key has started
                        record = None
                    if record is None:
                        record, held = {"__key__": prefix, "__url__": url}, 0
                    suffix = suffix.lower()
                    if "__skip__" not in record:
                        skip = _oversize(info.name, suffix, info.size, held)
                        if skip is not None:
                            record = {"__key__": prefix, "__url__": url, "__skip__": skip}  # drop what was read
                        else:
                            record[suffix] = tar.extractfile(info).read()  # type: ignore[union-attr]
                            held += 0 if suffix == "json" else info.size
                    member = "<header>"
            if record is not None:
                yield record
        except (tarfile.TarError, OSError, EOFError, ValueError) as exn:
            on_error(f"{url}:{member}", f"{type(exn).__name__}: {exn}")
