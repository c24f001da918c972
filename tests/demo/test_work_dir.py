"""`kmsync run --work-dir DIR` never deletes what it did not make (issue #20, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmsync_cli.demo import WORK_DIR_MARKER, main, prepare_work_dir


def test_a_directory_with_someone_elses_files_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not empty and was not made by `kmsync run`"):
        prepare_work_dir(tmp_path)
    assert (tmp_path / "thesis.tex").read_text() == "years of work"
    assert main(["--work-dir", str(tmp_path)]) == 2  # the CLI refuses before starting anything
    assert (tmp_path / "thesis.tex").exists()


def test_a_new_an_empty_or_an_earlier_runs_directory_is_made_fresh(tmp_path: Path) -> None:
    fresh = tmp_path / "new"
    prepare_work_dir(fresh)
    assert (fresh / WORK_DIR_MARKER).exists()
    (fresh / "logs").mkdir()
    (fresh / "logs" / "sink.log").write_text("old run")
    prepare_work_dir(fresh)  # an earlier run's directory: emptied
    assert sorted(p.name for p in fresh.iterdir()) == [WORK_DIR_MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_work_dir(empty)
    assert (empty / WORK_DIR_MARKER).exists()
