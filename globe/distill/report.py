"""The distillation's counts: per chunk (its done-marker) and for the whole run (``report.json``).

A chunk's counts are written in its done-marker when the chunk is finished, so the report is
the sum over every done-marker in the output folder, whichever run (and rank) finished each
chunk: a resumed run reports the whole data set, with nothing counted twice. ``throughput``
is the current run's own: the images it processed, its wall time, and the seconds each teacher
and step took.

Counts (``merge_chunks``):

* ``rows`` — input rows (CSV) or records (shards) in the finished chunks; ``images`` — those
  decoded and shown to the teachers; ``skipped_input`` — the rest, by reason;
* ``kept`` (written to the kept shards), ``kept_fraction`` (of ``images``), ``kept_per_country``;
* ``non_localizable_written`` — rejected samples written as ``localizable: false`` examples;
* ``dropped_by`` — per drop reason (``chain`` and the four filters), the samples it rejected
  (a sample can fail several); ``dropped_only_by`` — those it alone rejected;
  ``combinations`` — dropped samples per exact set of failed reasons ("localizability+correctness");
* ``teachers`` — per teacher, ``problems`` (what the parser could not read) and ``unreadable``
  (outputs without a readable chain);
* ``entities`` — verified and hallucinated entities over all samples' chosen chains.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from globe.distill.decision import DROP_REASONS
from globe.distill.records import SampleResult

__all__ = ["UNREADABLE", "chunk_counts", "format_summary", "merge_chunks"]

#: parse problems that leave no chain to keep
UNREADABLE = frozenset({"not_text", "too_long", "parse_error", "no_reasoning", "no_country"})
MAX_DROPPED_EXAMPLES = 20


def chunk_counts(results: Iterable[SampleResult], rows: int, skipped: Mapping[str, int],
                 skipped_keys: Iterable[tuple[str, str]] = ()) -> dict:
    """The counts of one finished chunk (the done-marker's ``counts``).

    >>> r = SampleResult("a", "kept", (), "France", {"t": ()})
    >>> d = SampleResult("b", "dropped", ("localizability", "correctness"), "Peru", {"t": ("no_score",)})
    >>> c = chunk_counts([r, d], rows=3, skipped={"corrupt_image": 1})
    >>> c["kept"], c["dropped_by"], c["combinations"], c["teachers"]["t"]["problems"]
    (1, {'localizability': 1, 'correctness': 1}, {'localizability+correctness': 1}, {'no_score': 1})
    """
    kept = non_localizable = images = verified = hallucinated = 0
    dropped_by: Counter[str] = Counter()
    only: Counter[str] = Counter()
    combinations: Counter[str] = Counter()
    per_country: Counter[str] = Counter()
    problems: dict[str, Counter[str]] = {}
    unreadable: Counter[str] = Counter()
    examples: list[list[str]] = []
    for r in results:
        images += 1
        verified += r.verified
        hallucinated += r.hallucinated
        for teacher, found in r.problems.items():
            problems.setdefault(teacher, Counter()).update(found)
            unreadable[teacher] += bool(UNREADABLE.intersection(found))
        if r.route == "kept":
            kept += 1
            per_country[r.country or "?"] += 1
            continue
        non_localizable += r.route == "non_localizable"
        dropped_by.update(r.failed)
        if len(r.failed) == 1:
            only[r.failed[0]] += 1
        combinations["+".join(r.failed)] += 1
        if len(examples) < MAX_DROPPED_EXAMPLES:
            examples.append([r.key, "+".join(r.failed)])
    return {
        "rows": rows, "images": images, "skipped_input": dict(skipped), "skipped_examples": [list(k) for k in skipped_keys],
        "kept": kept, "non_localizable_written": non_localizable,
        "dropped_by": dict(dropped_by), "dropped_only_by": dict(only), "combinations": dict(combinations),
        "kept_per_country": dict(per_country),
        "teachers": {t: {"problems": dict(p), "unreadable": unreadable[t]} for t, p in problems.items()},
        "entities": {"verified": verified, "hallucinated": hallucinated},
        "dropped_examples": examples,
    }


def _add(total: dict, part: Mapping) -> None:
    for key, value in part.items():
        if isinstance(value, Mapping):
            _add(total.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def merge_chunks(counts: Iterable[Mapping]) -> dict:
    """The sum of chunks' counts, with the derived figures (``kept_fraction``, ordered keys).

    >>> a = {"rows": 2, "images": 2, "kept": 1, "dropped_by": {"correctness": 1}, "kept_per_country": {"Peru": 1}}
    >>> m = merge_chunks([a, a])
    >>> m["images"], m["kept"], m["kept_fraction"], m["dropped_by"]["correctness"], m["dropped_by"]["chain"]
    (4, 2, 0.5, 2, 0)
    """
    total: dict = {}
    examples: list = []
    for part in counts:
        _add(total, {k: v for k, v in part.items() if k not in ("skipped_examples", "dropped_examples")})
        examples.extend(part.get("dropped_examples", [])[: max(0, MAX_DROPPED_EXAMPLES - len(examples))])
    for key in ("rows", "images", "kept", "non_localizable_written"):
        total.setdefault(key, 0)
    for key in ("dropped_by", "dropped_only_by"):
        found = total.get(key, {})
        total[key] = {name: found.get(name, 0) for name in DROP_REASONS}
    total["combinations"] = dict(sorted(total.get("combinations", {}).items(), key=lambda kv: (-kv[1], kv[0])))
    total["kept_per_country"] = dict(sorted(total.get("kept_per_country", {}).items(), key=lambda kv: (-kv[1], kv[0])))
    total.setdefault("skipped_input", {})
    total.setdefault("teachers", {})
    total.setdefault("entities", {"verified": 0, "hallucinated": 0})
    total["kept_fraction"] = total["kept"] / total["images"] if total["images"] else 0.0
    total["dropped_examples"] = examples
    return total


def format_summary(report: Mapping) -> str:
    """The report as a few readable lines (printed at the end of a run)."""
    images = report.get("images", 0)
    skipped = report.get("skipped_input", {})
    lines = [
        f"distillation: {report.get('rows', 0):,} input rows, {images:,} images read"
        + (f", {sum(skipped.values()):,} skipped ({', '.join(f'{k} {v:,}' for k, v in sorted(skipped.items()))})" if skipped else ""),
        f"kept {report.get('kept', 0):,} ({100 * report.get('kept_fraction', 0.0):.1f} % of the images read)"
        + (f"; {report['non_localizable_written']:,} non-localizable examples written" if report.get("non_localizable_written") else ""),
        "dropped by (a sample can fail several)            alone",
    ]
    for name in DROP_REASONS:
        lines.append(f"  {name:<16} {report.get('dropped_by', {}).get(name, 0):>10,}   {report.get('dropped_only_by', {}).get(name, 0):>10,}")
    combos = list(report.get("combinations", {}).items())[:6]
    if combos:
        lines.append("most frequent combinations: " + "; ".join(f"{k} {v:,}" for k, v in combos))
    countries = list(report.get("kept_per_country", {}).items())
    if countries:
        lines.append(f"kept per country ({len(countries)} countries): " + ", ".join(f"{k} {v:,}" for k, v in countries[:10])
                     + (", ..." if len(countries) > 10 else ""))
    for name, t in report.get("teachers", {}).items():
        problems = ", ".join(f"{k} {v:,}" for k, v in sorted(t.get("problems", {}).items(), key=lambda kv: -kv[1]))
        lines.append(f"teacher {name}: {t.get('unreadable', 0):,} of {images:,} outputs without a readable chain"
                     + (f" ({problems})" if problems else ""))
    ents = report.get("entities", {})
    lines.append(f"entities: {ents.get('verified', 0):,} verified, {ents.get('hallucinated', 0):,} hallucinated "
                 f"(segmentation: {report.get('segmentation_source', '?')})")
    thr = report.get("throughput", {})
    if thr:
        lines.append(f"this run: {thr.get('images', 0):,} images in {thr.get('seconds', 0.0):.1f} s "
                     f"= {thr.get('images_per_second', 0.0):.2f} images/s on {thr.get('ranks', 1)} rank(s)")
    chunks = report.get("chunks", {})
    if chunks:
        lines.append(f"chunks: {chunks.get('done', 0)} of {chunks.get('total', 0)} done; "
                     f"{len(report.get('shards', []))} shard(s) in {report.get('out_dir', '?')}")
    return "\n".join(lines)
