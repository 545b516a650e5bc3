"""Atomic outputs and early path checks (globe/output_files.py, callbacks/atomic_checkpoint.py)."""

from __future__ import annotations

import pytest

from callbacks.atomic_checkpoint import replace_path
from globe.output_files import OutputPathError, atomic_writer, check_writable_dir, check_writable_file


def test_atomic_writer_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary left behind
    with atomic_writer(target) as f:
        f.write("key\udcff\n")  # a lone surrogate (undecodable tar name) is escaped, not a crash
    assert target.read_text() == "key\\udcff\n"


def test_path_checks_name_the_problem(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputPathError, match="is a directory"):
        check_writable_file(tmp_path / "d")
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputPathError, match="not a directory"):
        check_writable_dir(tmp_path / "f")
    with pytest.raises(OutputPathError, match="not writable"):
        check_writable_dir("/proc/globe-no-such-dir")
    assert check_writable_dir(tmp_path / "new" / "sub").is_dir()


def test_replace_path_swaps_files_and_checkpoint_directories(tmp_path):
    new, target = tmp_path / ".last.ckpt.partial", tmp_path / "last.ckpt"
    new.write_text("2")
    target.write_text("1")
    replace_path(new, target)
    assert target.read_text() == "2" and not new.exists()
    # a distributed checkpoint is a directory: the old one is replaced whole
    new.mkdir()
    (new / "shard").write_text("3")
    replace_path(new, target)
    assert (target / "shard").read_text() == "3"
    new.mkdir()
    (new / "other").write_text("4")
    replace_path(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_atomic_writer_gives_the_permissions_of_a_plain_open(tmp_path):
    import os

    from globe.output_files import atomic_writer

    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    with atomic_writer(tmp_path / "atomic.txt") as f:
        f.write("x")
    mode = lambda name: os.stat(tmp_path / name).st_mode & 0o777  # noqa: E731
    assert mode("atomic.txt") == mode("plain.txt") != 0o600
