"""The library ``globe`` does not depend on the data modules (read from the source, not imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "globe"


def _is_data_modules(name: str | None) -> bool:
    return bool(name) and (name == "data_modules" or name.startswith("data_modules."))


def data_module_imports(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: what`` for every import of ``data_modules`` in ``source``: ``import`` and
    ``from`` statements at any depth (inside functions too), and ``importlib.import_module`` /
    ``__import__`` calls with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [f"{filename}:{node.lineno}: {n}" for n in names if _is_data_modules(n)]
    return found


def test_the_checker_finds_every_form_of_import():
    source = (
        "import data_modules.sample\n"
        "from data_modules.geosynth.scene import plan_scene\n"
        "def f():\n"
        "    from data_modules import GeoSample\n"
        "    importlib.import_module('data_modules.im2gps3k')\n"
        "import data_modules_extra, globe.sample\n"  # another package whose name merely starts the same
        "from . import sample\n"
    )
    assert [line.split(": ", 1)[1] for line in data_module_imports(source)] == [
        "data_modules.sample", "data_modules.geosynth.scene", "data_modules", "data_modules.im2gps3k",
    ]


def test_no_library_module_imports_data_modules():
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 30  # the whole library was read, not an empty folder
    found = [hit for f in files for hit in data_module_imports(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert not found, "globe/ must not import data_modules:\n" + "\n".join(found)


def test_geo_sample_is_one_class_under_both_names():
    from data_modules.sample import GeoSample as OldName
    from globe.sample import GeoSample

    assert OldName is GeoSample and GeoSample.__module__ == "globe.sample"


def test_the_shipped_tokenizer_corpus_is_what_geosynth_writes():
    # globe/models/tiny.py trains the tiny tokenizer on this file instead of calling GeoSynth;
    # if GeoSynth's wording changed on purpose, rewrite the file (it changes the tiny model)
    import random

    from data_modules.geosynth.reasoning import trace
    from data_modules.geosynth.scene import plan_scene
    from globe.models.tiny import geosynth_corpus

    rng = random.Random("tokenizer-corpus:12345")
    expected = [trace(plan_scene(rng, localizable=rng.random() > 0.15), rng) for _ in range(600)]
    assert geosynth_corpus() == expected
