"""The intrinsic reward stream in the learner: subsampling, scaling, checkpointing."""

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
