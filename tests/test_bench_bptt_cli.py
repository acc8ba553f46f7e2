"""`engram bench bptt` rejects a malformed sweep before measuring anything."""

from __future__ import annotations

import pytest

from benchmarks import bptt


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--modes", "msm,xyz"], "--modes"),
        (["--modes", ","], "--modes"),
        (["--budgets", "0.05,abc"], "--budgets"),
        (["--budgets", "0,0.5"], "--budgets"),
        (["--budgets", "1.5"], "--budgets"),
    ],
)
def test_bad_sweep_arguments_exit_with_a_message(argv, named, capsys, monkeypatch):
    monkeypatch.setattr(bptt, "run_benchmark", lambda *a, **k: pytest.fail("measured despite bad arguments"))
    with pytest.raises(SystemExit) as exit_info:
        bptt.main(argv)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
