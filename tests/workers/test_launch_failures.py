"""The trainer pod's launcher, when a trainer process fails: it names each failed rank with its exit code and
exits 2 only when every failure was bad input (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from hexrl_workers.trainer.launch import failed_exit

pytestmark = pytest.mark.workers


def _failed(exit_codes: dict[int, int], tmp_path: Path) -> ChildFailedError:
    """torch's own error, as elastic_launch raises it: global rank -> the failed process."""
    failures = {rank: ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=code,
                                     error_file=str(tmp_path / f"no-error-file-{rank}"))
                for rank, code in exit_codes.items()}
    return ChildFailedError("hexrl_workers", failures)


def test_names_each_failed_rank_and_its_exit(tmp_path, capsys):
    assert failed_exit(_failed({1: 1, 3: -9}, tmp_path)) == 1
    err = capsys.readouterr().err
    assert "a trainer process failed (rank 1: exit 1; rank 3: exit -9)" in err


def test_bad_input_everywhere_exits_2(tmp_path, capsys):
    assert failed_exit(_failed({0: 2, 1: 2}, tmp_path)) == 2
    assert failed_exit(_failed({0: 2, 1: 1}, tmp_path)) == 1
