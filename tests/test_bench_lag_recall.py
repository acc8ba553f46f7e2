"""benchmarks/lag_recall.py: the task's answers, its two losses, and the command's output."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import lag_recall


def test_reinforce_pushes_up_the_right_answer_and_supervised_matches_cross_entropy():
    answers = torch.tensor([[0, 1], [2, 3]])
    logits = torch.zeros(2, 2, 4, requires_grad=True)
    loss, accuracy = lag_recall.loss_and_accuracy(logits, answers, "supervised", 0.0)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert accuracy == 0.25  # argmax of equal logits is symbol 0: right once in four
    torch.manual_seed(0)
    total = torch.zeros(2, 2, 4)
    for _ in range(400):  # the policy gradient's mean points at the answers
        loss, _ = lag_recall.loss_and_accuracy(logits, answers, "reinforce", 0.0)
        total += torch.autograd.grad(loss, logits)[0]
    descent = -total
    assert torch.equal(descent.argmax(-1), answers)


def test_the_command_trains_each_core_and_mode_and_writes_its_curves(tmp_path, capsys):
    out = tmp_path / "lag.json"
    code = lag_recall.main(["--lag", "3", "--length", "6", "--updates", "2", "--cores", "lstm,sam+code",
                            "--batch-size", "5", "--json", str(out), "--png", str(tmp_path / "lag.png")])
    assert code == 0
    runs = json.loads(out.read_text())["runs"]
    assert {(r["mode"], r["core"]) for r in runs} == {
        (mode, core) for mode in ("supervised", "reinforce") for core in ("lstm", "sam+code")}
    assert all(len(r["accuracy"]) == 2 for r in runs)
    assert (tmp_path / "lag.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "sam+code" in printed and "2 updates of 5 sequences" in printed


@pytest.mark.parametrize("argv, message", [(["--lag", "9", "--length", "6"], "--lag"),
                                           (["--cores", "gru"], "unknown core"),
                                           (["--batch-size", "1"], "--batch-size")])
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        lag_recall.main(argv)
    assert message in capsys.readouterr().err
