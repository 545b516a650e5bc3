"""Write the distilled samples as MP16-Reason shards, one chunk at a time, resumable.

``DistillWriter`` is the prediction-writer callback of ``cli.py predict --config
configs/distill/...``. Output folder ``out_dir``::

    manifest.json                          the data's chunking and the module's settings
    {prefix}-c000003-r0-000000.tar         kept samples of chunk 3, written by rank 0
    {prefix}-nonloc-c000003-r0-000000.tar  its localizable: false examples (write_non_localizable)
    chunks/c000003.json                    chunk 3's done-marker: its shards and its counts
    report.json                            the run's report (globe.distill.report)

Per chunk: the kept samples stream into a temporary tar (the project's atomic shard sink:
hidden ``.partial`` name, ``fsync``, ``os.replace``); when the chunk's last batch arrives the
tar is renamed into place, *then* the done-marker is written (atomically too). So a finished
chunk always has its marker and complete shards; a killed run leaves at most temporary files
and shards of chunks without a marker.

Resume (the same command again): rank 0 checks that ``manifest.json`` matches this run (same
input chunks, same settings; otherwise it stops, naming what differs), deletes temporary files
and the shards of chunks without a marker (a kill between a rename and its marker), and every
rank gives the done chunks to the data module (``skip_chunks``), which does not read them
again. The remaining chunks are split over the ranks of this run, which may be more or fewer
than before: nothing is written twice, nothing is lost. A marker whose shards have disappeared
does not count as done. Several nodes need ``out_dir`` on a shared file system.

At the end the ranks meet, and rank 0 sums every marker into ``report.json`` (atomic) and
prints the summary. ``trainer.predict`` keeps no predictions (``return_predictions`` is turned
off: the images would stay in memory), and each batch's image bytes are dropped once written.

The shard sink is passed in (``shard_sink: data_modules.shard_sink.AtomicShardSink`` in the
YAML): the library does not import the data layer.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from globe.distill.records import BatchResult, SampleResult
from globe.distill.report import chunk_counts, format_summary, merge_chunks
from globe.output_files import atomic_writer, check_writable_dir

__all__ = ["DistillWriter", "ResumeMismatchError", "read_markers"]

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
_MARKER = re.compile(r"^c(\d{6,})\.json$")
_ONE_SHARD = 10**9  # samples per shard: a chunk is one shard (the chunk size bounds it)


class ResumeMismatchError(RuntimeError):
    """An output folder written by a run with other data or settings."""


def _marker_dir(out: Path) -> Path:
    return out / "chunks"


def _shard_pattern(prefix: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(prefix)}(?:-nonloc)?-c(\d{{6,}})-r\d+-\d{{6}}\.tar$")


def read_markers(out: str | Path) -> dict[int, dict]:
    """The done-markers of ``out`` by chunk; a marker that cannot be read, or whose shards are
    missing, is left out (its chunk is done again)."""
    out = Path(out)
    found: dict[int, dict] = {}
    folder = _marker_dir(out)
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        m = _MARKER.match(path.name)
        if m is None:
            continue
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
            shards = [*marker["shards"], *marker.get("non_localizable_shards", [])]
        except (OSError, ValueError, KeyError, TypeError) as exn:
            log.warning("distill: unreadable done-marker %s (%s): its chunk will be done again", path, exn)
            continue
        missing = [s for s in shards if not (out / s).is_file()]
        if missing:
            log.warning("distill: chunk %s lost its shard(s) %s: it will be done again", m.group(1), missing)
            continue
        found[int(m.group(1))] = marker
    return found


def remove_unfinished(out: Path, prefix: str, done: set[int]) -> list[str]:
    """Delete temporary files and the shards of chunks without a done-marker; returns their names."""
    pattern = _shard_pattern(prefix)
    removed = []
    for folder in (out, _marker_dir(out)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            m = pattern.match(path.name)
            stale_shard = folder == out and m is not None and int(m.group(1)) not in done
            temporary = path.name.startswith(".") and path.name.endswith(".partial")
            if (stale_shard or temporary) and path.is_file():
                path.unlink()
                removed.append(path.name)
    return sorted(removed)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _differences(old: dict, new: dict, path: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        where = f"{path}.{k}" if path else k
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, where)
        elif a != b:
            out.append(f"{where}: {a!r} -> {b!r}"[:300])
    return out


class _OpenChunk:
    def __init__(self, sinks: dict[str, Any]) -> None:
        self.sinks = sinks
        self.results: list[SampleResult] = []
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()


class DistillWriter(BasePredictionWriter):
    """Args:
    out_dir: the output folder (module docstring).
    shard_sink: the atomic tar writer class, ``data_modules.shard_sink.AtomicShardSink``.
    prefix: shard name prefix.
    print_summary: print the report's summary at the end (rank 0).
    """

    def __init__(self, out_dir: str, shard_sink: type, prefix: str = "distill", print_summary: bool = True) -> None:
        super().__init__(write_interval="batch")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix) or prefix.startswith("."):
            raise ValueError(f"DistillWriter: prefix must be a plain file-name part, got {prefix!r}")
        self.out = Path(out_dir)
        self.sink_class = shard_sink
        self.prefix = prefix
        self.print_summary = print_summary
        self._open: dict[int, _OpenChunk] = {}
        self.run_id = ""
        self.report: dict | None = None
        self._started = 0.0

    # ------------------------------------------------------------------ set-up and resume
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        trainer.predict_loop.return_predictions = False  # the writer keeps nothing; neither should the loop
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "skip_chunks") or not hasattr(datamodule, "chunking"):
            raise TypeError("DistillWriter needs a chunked data module (data_modules.raw_images.RawImages)")
        error = None
        if trainer.is_global_zero:
            try:
                self._prepare(datamodule, pl_module)
            except Exception as exn:  # noqa: BLE001 - raised on every rank below, so no rank waits forever
                error = (type(exn).__name__, str(exn))
        error = trainer.strategy.broadcast(error)
        if error is not None:
            kind, message = error
            raise ResumeMismatchError(message) if kind == "ResumeMismatchError" else RuntimeError(f"{kind}: {message}")
        self.run_id = trainer.strategy.broadcast(time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 10**6:06d}")
        trainer.strategy.barrier("distill_writer_setup")
        done = set(read_markers(self.out))
        datamodule.skip_chunks(done)
        self._started = time.perf_counter()
        if trainer.is_global_zero and done:
            log.warning("distill: resuming in %s: %d of %d chunks already done", self.out, len(done), datamodule.num_chunks)

    def _prepare(self, datamodule, pl_module: LightningModule) -> None:
        """Rank 0: the folder is writable, the manifest matches, leftovers of a killed run are gone."""
        check_writable_dir(self.out, "distillation output folder")
        _marker_dir(self.out).mkdir(exist_ok=True)
        settings = pl_module.settings() if hasattr(pl_module, "settings") else {}
        manifest = _jsonable({"format": MANIFEST_FORMAT, "prefix": self.prefix, "data": datamodule.chunking(),
                              "settings": settings})
        path = self.out / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            differences = _differences(old, manifest)
            if differences:
                raise ResumeMismatchError(
                    f"{self.out} holds a run with other data or settings ({'; '.join(differences[:5])}); "
                    "use another out_dir, or delete this one to start over")
        else:
            with atomic_writer(path) as f:
                f.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        removed = remove_unfinished(self.out, self.prefix, set(read_markers(self.out)))
        if removed:
            log.warning("distill: removed %d leftover file(s) of an interrupted run: %s", len(removed), ", ".join(removed[:5]))

    # ------------------------------------------------------------------ per batch
    def _chunk(self, chunk: int, rank: int) -> _OpenChunk:
        state = self._open.get(chunk)
        if state is None:
            names = {"kept": f"{self.prefix}-c{chunk:06d}-r{rank}", "non_localizable": f"{self.prefix}-nonloc-c{chunk:06d}-r{rank}"}
            state = self._open[chunk] = _OpenChunk({route: self.sink_class(self.out, name, _ONE_SHARD) for route, name in names.items()})
        return state

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        if not isinstance(prediction, BatchResult) or prediction.chunk is None:
            return
        state = self._chunk(prediction.chunk, trainer.global_rank)
        for result in prediction.results:
            if result.route != "dropped":
                meta = json.dumps(result.meta, ensure_ascii=False, sort_keys=True, allow_nan=False).encode("utf-8")
                state.sinks[result.route].write({"__key__": result.key, "jpg": result.jpg, "json": meta})
            result.meta = result.jpg = None  # written: do not hold the image until the chunk ends
            state.results.append(result)
        for name, seconds in prediction.seconds.items():
            state.seconds[name] = state.seconds.get(name, 0.0) + seconds
        if prediction.chunk_end:
            self._finish(prediction, state, trainer.global_rank)

    def _finish(self, last: BatchResult, state: _OpenChunk, rank: int) -> None:
        """Publish the chunk's shards, then its done-marker."""
        for sink in state.sinks.values():
            sink.close()
        marker = {
            "chunk": last.chunk, "rank": rank, "run": self.run_id,
            "shards": list(state.sinks["kept"].names), "non_localizable_shards": list(state.sinks["non_localizable"].names),
            "seconds": {k: round(v, 4) for k, v in state.seconds.items()},
            "wall_seconds": round(time.perf_counter() - state.started, 4),
            "counts": chunk_counts(state.results, last.rows, last.skipped, last.skipped_keys),
        }
        with atomic_writer(_marker_dir(self.out) / f"c{last.chunk:06d}.json") as f:
            f.write(json.dumps(marker, ensure_ascii=False) + "\n")
        del self._open[last.chunk]  # type: ignore[arg-type]

    def _abort_open(self) -> None:
        for chunk, state in list(self._open.items()):
            for sink in state.sinks.values():
                sink.abort()
            del self._open[chunk]

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._abort_open()  # finished chunks stay; the open ones are redone by the next run

    # ------------------------------------------------------------------ the report
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._open:
            log.warning("distill: chunk(s) %s did not reach their last batch (a batch limit?): not marked done",
                        sorted(self._open))
            self._abort_open()
        trainer.strategy.barrier("distill_writer_end")
        if trainer.is_global_zero:
            self.report = self.build_report(trainer)
            with atomic_writer(self.out / "report.json") as f:
                f.write(json.dumps(self.report, indent=2, ensure_ascii=False) + "\n")
            if self.print_summary:
                print(format_summary(self.report), flush=True)
        trainer.strategy.barrier("distill_writer_report")

    def build_report(self, trainer: Trainer) -> dict:
        markers = read_markers(self.out)
        manifest = json.loads((self.out / "manifest.json").read_text(encoding="utf-8"))
        report = merge_chunks(m["counts"] for m in markers.values())
        mine = [m for m in markers.values() if m.get("run") == self.run_id]
        seconds = time.perf_counter() - self._started
        images = sum(m["counts"]["images"] for m in mine)
        steps: dict[str, float] = {}
        for m in mine:
            for k, v in m.get("seconds", {}).items():
                steps[k] = round(steps.get(k, 0.0) + v, 4)
        total = manifest["data"].get("chunks", len(markers))
        segmentation = manifest["settings"].get("filters", {}).get("segmentation", {}).get("source", "?")
        report.update({
            "out_dir": str(self.out),
            "complete": len(markers) >= total,
            "chunks": {"done": len(markers), "total": total, "this_run": len(mine)},
            "shards": sorted(str(self.out / s) for m in markers.values() for s in m["shards"]),
            "non_localizable_shards": sorted(str(self.out / s) for m in markers.values()
                                             for s in m.get("non_localizable_shards", [])),
            "segmentation_source": segmentation,
            "throughput": {"images": images, "seconds": round(seconds, 3), "ranks": trainer.world_size,
                           "images_per_second": round(images / seconds, 4) if seconds > 0 else 0.0,
                           "step_seconds": steps},
            "data": manifest["data"],
            "settings": manifest["settings"],
        })
        return report
