"""benchmarks/bonus_probe.py: its rank correlation, its refusal of runs without a bonus, and
that it reads a trained density model the right way round (a novel frame is less familiar
and earns more than one the model was trained on)."""

import pytest
import torch

from benchmarks.bonus_probe import fresh_bonus, main, probe, rank_correlation, trained_bonus
from engram.config import ConfigError, load_config
from learners.exploration import PseudoCountBonus


def test_rank_correlation_averages_tied_ranks():
    # ranks (0, 1.5, 1.5, 3) and (0, 2, 1, 3): covariance 4.5 over sqrt(4.5 · 5)
    assert rank_correlation([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert rank_correlation([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
    assert rank_correlation([3, 1, 2], [-30, -10, -20]) == pytest.approx(-1.0)


def test_a_run_without_a_density_model_is_refused_by_name():
    payload = {"config": load_config("configs/smoke.yaml").model_dump(mode="json"), "learner": {"agent": {}}}
    with pytest.raises(ConfigError, match="smoke-ckpt.pt.*pixelcnn"):
        trained_bonus(payload, "smoke-ckpt.pt")


def test_a_frame_never_seen_is_less_familiar_and_earns_more_than_a_trained_one(one_torch_thread):
    torch.manual_seed(0)
    familiar = torch.zeros(1, 4, 84, 84, dtype=torch.uint8)
    familiar[..., 20:40, 30:60] = 200
    novel = familiar.clone()
    novel[..., 60:70, 10:20] = 120
    model = PseudoCountBonus()
    model.bonus(familiar.expand(30, 1, 4, 84, 84).contiguous())  # 30 steps on the familiar frame
    state = {name: value.clone() for name, value in model.model.state_dict().items()}

    measured = probe(model, torch.cat([familiar, novel]))

    assert measured["log_prob"][1] < measured["log_prob"][0]
    assert measured["bonus"][1] > measured["bonus"][0]
    assert all(torch.equal(state[name], value) for name, value in model.model.state_dict().items())


def test_a_fresh_model_trains_on_exactly_the_frames_asked_for(one_torch_thread):
    config = load_config("configs/freeway_pixelcnn.yaml", ["exploration.frame_fraction=0.25"])
    torch.manual_seed(1)
    untrained = PseudoCountBonus(config.exploration.pseudo_count_config())

    torch.manual_seed(1)  # the same initial weights
    model = fresh_bonus(config, 37, seed=3, envs=4)

    assert model.frames_seen == 37
    assert model.config == config.exploration.pseudo_count_config()
    changed = [not torch.equal(a, b) for a, b in zip(untrained.model.state_dict().values(),
                                                       model.model.state_dict().values())]
    assert any(changed)


def test_fresh_needs_a_config_with_a_density_model(capsys):
    with pytest.raises(SystemExit):
        main(["--fresh", "10"])
    assert "--fresh needs --config" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--fresh needs pixelcnn"):
        main(["--fresh", "10", "--config", "configs/freeway_lstm.yaml"])
