"""The intrinsic reward stream in the learner: subsampling, scaling, checkpointing."""

import pytest
import torch

from learners.exploration import PseudoCountConfig
from learners.intrinsic import IntrinsicRewards

SMALL = PseudoCountConfig(hidden_channels=4, layers=2, head_channels=8)


def _frames(T=4, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (T + 1, B, 4, 84, 84), generator=g, dtype=torch.uint8)


def test_full_fraction_scores_every_next_frame_in_time_order():
    stream = IntrinsicRewards(SMALL, frame_fraction=1.0)
    bonus = stream(_frames())
    assert bonus.shape == (4, 3) and bool((bonus > 0).all())
    assert stream.model.frames_seen == 12


def test_subsampled_stream_scales_the_scored_transitions():
    torch.manual_seed(0)
    observations = _frames(T=8, B=4)
    reference = IntrinsicRewards(SMALL, frame_fraction=1.0)
    sampled = IntrinsicRewards(SMALL, frame_fraction=0.5, seed=3)
    sampled.model.model.load_state_dict(reference.model.model.state_dict())
    bonus = sampled(observations)
    scored = bonus != 0
    assert 0 < int(scored.sum()) < 32
    assert sampled.model.frames_seen == int(scored.sum())
    # the scored frames, seen alone in the same order, give half the reported bonus
    alone = IntrinsicRewards(SMALL, frame_fraction=1.0)
    alone.model.model.load_state_dict(reference.model.model.state_dict())
    picked = observations[1:].flatten(0, 1)[scored.flatten()]
    expected, _ = alone.model.bonus(picked[:, None])
    torch.testing.assert_close(bonus[scored], expected[:, 0] * 2.0)


def test_state_round_trips_the_model_and_the_sampler():
    stream = IntrinsicRewards(SMALL, frame_fraction=0.5, seed=1)
    stream(_frames(seed=1))
    restored = IntrinsicRewards(SMALL, frame_fraction=0.5, seed=99)
    restored.load_state_dict(stream.state_dict())
    observations = _frames(seed=2)
    torch.testing.assert_close(restored(observations), stream(observations))


def test_held_bonus_scores_a_few_steps_per_column_and_each_step_takes_the_nearest_ones_bonus():
    torch.manual_seed(0)
    observations = _frames(T=10, B=5, seed=4)
    reference = IntrinsicRewards(SMALL, frame_fraction=1.0)
    held = IntrinsicRewards(SMALL, frame_fraction=0.2, subsample="hold", seed=3)  # 2 steps of each column
    held.model.model.load_state_dict(reference.model.model.state_dict())

    bonus = held(observations)

    assert held.model.frames_seen == 2 * 5
    assert bool((bonus > 0).all())  # every transition pays, none at 0
    for b in range(5):
        values = bonus[:, b].unique()
        assert len(values) <= 2
    # By hand: the scored steps of each column are where the bonus changes hands; score them
    # alone, in time-major order, with the same starting model, and take the nearest one.
    alone = IntrinsicRewards(SMALL, frame_fraction=1.0)
    alone.model.model.load_state_dict(reference.model.model.state_dict())
    replay = IntrinsicRewards(SMALL, frame_fraction=0.2, subsample="hold", seed=3)
    steps = torch.rand(10, 5, generator=replay._generator).argsort(dim=0)[:2]
    chosen = torch.zeros(10, 5, dtype=torch.bool)
    chosen.scatter_(0, steps, True)
    order = [(t, b) for t in range(10) for b in range(5) if chosen[t, b]]
    scored, _ = alone.model.bonus(torch.stack([observations[1 + t, b] for t, b in order])[:, None])
    by_step = {key: float(value) for key, value in zip(order, scored[:, 0])}
    for b in range(5):
        mine = sorted(int(t) for t in steps[:, b])
        for t in range(10):
            nearest = min(mine, key=lambda s: (abs(s - t), s))
            assert float(bonus[t, b]) == pytest.approx(by_step[(nearest, b)], rel=1e-5)


def test_held_bonus_scores_at_least_one_step_of_every_column():
    held = IntrinsicRewards(SMALL, frame_fraction=0.01, subsample="hold")
    held(_frames(T=4, B=3))
    assert held.model.frames_seen == 3


def test_an_unknown_subsampling_is_refused():
    with pytest.raises(ValueError, match="subsample must be one of random, hold"):
        IntrinsicRewards(SMALL, frame_fraction=0.5, subsample="every_other")
