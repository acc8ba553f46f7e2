"""Tests of the pseudo-count bonus (learners/exploration.py).

References: closed-form arithmetic for the preprocessing and the count formulas, a
double-loop return for the mixed Monte-Carlo target, the exact prediction gain at a tiny
learning rate for the first-order formulas, and Spearman rank correlation written out here.
"""

from __future__ import annotations

import math

import pytest
import torch

from learners.exploration import (
    PseudoCountBonus,
    PseudoCountConfig,
    exploration_bonus,
    mixed_monte_carlo_targets,
    preprocess_frames,
    pseudo_counts,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def float64():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    def ranks(x):
        r = torch.empty(len(x), dtype=torch.float64)
        r[x.argsort()] = torch.arange(len(x), dtype=torch.float64)
        return r - r.mean()

    ra, rb = ranks(a), ranks(b)
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def _pearson(a, b) -> float:
    a = torch.as_tensor(a, dtype=torch.float64) - sum(a) / len(a)
    b = torch.as_tensor(b, dtype=torch.float64) - sum(b) / len(b)
    return float((a * b).sum() / (a.norm() * b.norm()))


def _synthetic_frames(count: int, generator: torch.Generator) -> torch.Tensor:
    """Atari-like stacks ``[count, 4, 84, 84]`` uint8: 1-3 flat rectangles on black."""
    frames = torch.zeros(count, 4, 84, 84, dtype=torch.uint8)
    for index in range(count):
        for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
            top, left = torch.randint(0, 70, (2,), generator=generator).tolist()
            height, width = torch.randint(6, 20, (2,), generator=generator).tolist()
            brightness = int(torch.randint(60, 256, (1,), generator=generator))
            frames[index, :, top : top + height, left : left + width] = brightness
    return frames


def _one_frame() -> torch.Tensor:
    frame = torch.zeros(1, 4, 84, 84, dtype=torch.uint8)
    frame[..., 20:40, 30:60] = 200
    frame[..., 60:70, 10:20] = 120
    return frame


# ------------------------------------------------------------------------ pure functions

def test_preprocess_uses_the_last_frame_averages_2x2_and_quantises_to_3_bits():
    frames = torch.zeros(1, 4, 84, 84, dtype=torch.uint8)
    frames[0, :3] = 255  # older frames of the stack must be ignored
    frames[0, 3, 0, 0:2] = 100  # block (0, 0): mean of 100, 100, 0, 0 = 50 -> level 1
    frames[0, 3, 0:2, 2:4] = 255  # block (0, 1): 255 -> level 7
    frames[0, 3, 2:4, 0:2] = 32  # block (1, 0): 32 -> level 1 (32 * 8 / 256 = 1)
    frames[0, 3, 2:4, 2:4] = 31  # block (1, 1): 31 -> level 0
    levels = preprocess_frames(frames)
    assert levels.shape == (1, 1, 42, 42) and levels.dtype == torch.int64
    assert levels[0, 0, :2, :2].tolist() == [[1, 7], [1, 0]]
    assert int(levels[0, 0, 2:].sum()) == 0 and int(levels[0, 0, :, 2:].sum()) == 0


def test_pseudo_count_and_bonus_formulas():
    gain = torch.tensor([2.0, 0.0, -1.0, 8.0], dtype=torch.float64)
    n = torch.tensor([4.0, 9.0, 9.0, 16.0], dtype=torch.float64)
    counts = pseudo_counts(gain, n, c=0.1)
    expected_first = 1.0 / (math.exp(0.1 * 0.5 * 2.0) - 1.0)  # c n^{-1/2} PG = 0.1
    expected_last = 1.0 / (math.exp(0.1 * 0.25 * 8.0) - 1.0)
    assert counts[0].item() == pytest.approx(expected_first, rel=1e-12)
    assert counts[3].item() == pytest.approx(expected_last, rel=1e-12)
    assert math.isinf(counts[1]) and math.isinf(counts[2])  # PG <= 0: never-novel, infinite count
    bonus = exploration_bonus(counts, beta=0.05)
    assert bonus[0].item() == pytest.approx(0.05 / math.sqrt(expected_first + 0.01), rel=1e-12)
    assert bonus[1] == 0 and bonus[2] == 0


def test_mixed_monte_carlo_targets_match_a_double_loop():
    torch.manual_seed(0)
    T, B = 5, 3
    targets, rewards = torch.randn(T, B), torch.randn(T, B)
    discounts = torch.full((T, B), 0.9)
    discounts[2, 1] = 0.0  # an episode ends at t = 2 in env 1
    bootstrap = torch.randn(B)
    mixed = mixed_monte_carlo_targets(targets, rewards, discounts, bootstrap, mix=0.1)
    for t in range(T):
        for b in range(B):
            ret, scale = 0.0, 1.0
            for k in range(t, T):
                ret += scale * float(rewards[k, b])
                scale *= float(discounts[k, b])
            ret += scale * float(bootstrap[b])
            assert float(mixed[t, b]) == pytest.approx(0.9 * float(targets[t, b]) + 0.1 * ret, abs=1e-5)


def test_config_rejects_exact_gain_with_per_batch_updates():
    with pytest.raises(ValueError, match="per_batch"):
        PseudoCountConfig(pg="exact", update="per_batch")
    with pytest.raises(ValueError, match="'bogus'"):
        PseudoCountConfig(optimizer="bogus")


# ------------------------------------------------------------------------ prediction gain

def test_repeated_frame_gain_stays_non_negative_shrinks_and_count_grows_linearly(float64):
    """One frame shown 150 times, SGD (the papers' first-order setting), float64.

    Non-negativity: a small enough gradient step on -log ρ(x) cannot lower log ρ(x) (descent
    lemma); in float64 the only slack we allow is round-off on log ρ ≈ -10² nats (1e-9).
    """
    torch.manual_seed(0)
    bonus = PseudoCountBonus(PseudoCountConfig(optimizer="sgd", lr=3e-5))
    levels = bonus.preprocess(_one_frame())
    gains = torch.cat([bonus.train_and_measure(levels)[1] for _ in range(150)])
    n = torch.arange(1, 151, dtype=torch.float64)
    counts = pseudo_counts(gains, n, c=0.1)
    assert gains.min() > -1e-9
    assert gains[-50:].mean() < 0.05 * gains[:20].mean()
    late_n, late_counts = n[49:], counts[49:]
    assert torch.isfinite(late_counts).all()
    assert _pearson(late_n.tolist(), late_counts.tolist()) > 0.95
    log_log_slope = math.log(late_counts[-1] / late_counts[0]) / math.log(late_n[-1] / late_n[0])
    assert 0.5 < log_log_slope < 2.0, log_log_slope


@pytest.mark.parametrize(
    "optimizer, warm_up",
    [("sgd", True), ("rmsprop", True), ("adam", False)],  # Adam's momentum from older frames is not x's
)
def test_first_order_gain_equals_exact_gain_at_a_tiny_learning_rate(optimizer, warm_up, float64):
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(2)
    # η tiny: the exact gain is first order in η, so exact / estimate -> 1. The warm-up fills
    # the optimiser's second-moment state, which the preconditioned estimate must use.
    bonus = PseudoCountBonus(PseudoCountConfig(optimizer=optimizer, lr=1e-7, image_size=12))
    if warm_up:
        bonus.bonus(_synthetic_frames(6, generator)[:, None])
    levels = bonus.preprocess(_synthetic_frames(4, generator))
    exact = bonus.prediction_gains(levels, "exact")
    first_order = bonus.prediction_gains(levels, "first_order")
    assert torch.allclose(exact, first_order, rtol=1e-3), (exact, first_order)


@pytest.mark.parametrize("optimizer, lr", [("rmsprop", 1e-3), ("adam", 1e-4), ("sgd", 3e-5)])
def test_first_order_and_exact_gains_rank_frames_alike(optimizer, lr):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    bonus = PseudoCountBonus(PseudoCountConfig(optimizer=optimizer, lr=lr))
    seen = _synthetic_frames(60, generator)
    bonus.bonus(seen[:, None])  # brief online training, one step per frame
    levels = bonus.preprocess(torch.cat([seen[:8], _synthetic_frames(8, generator)]))
    exact = bonus.prediction_gains(levels, "exact")
    first_order = bonus.prediction_gains(levels, "first_order")
    assert _spearman(exact, first_order) >= 0.9


def test_prediction_gains_leave_the_state_unchanged():
    bonus = PseudoCountBonus(PseudoCountConfig(image_size=10))
    generator = torch.Generator().manual_seed(3)
    bonus.bonus(_synthetic_frames(3, generator)[:, None])
    before = {k: v.clone() for k, v in bonus.model.state_dict().items()}
    levels = bonus.preprocess(_synthetic_frames(2, generator))
    bonus.prediction_gains(levels, "exact")
    assert all(torch.equal(before[k], v) for k, v in bonus.model.state_dict().items())


# ------------------------------------------------------------------------ the bonus API

def test_bonus_is_time_major_and_a_repeated_frame_earns_less_each_time():
    bonus_model = PseudoCountBonus(PseudoCountConfig(image_size=16))
    generator = torch.Generator().manual_seed(4)
    env_frames = _synthetic_frames(2, generator)  # env 0 shows frame 0 forever, env 1 frame 1
    frames = env_frames[None].expand(6, 2, 4, 84, 84).contiguous()  # [T, B, C, H, W]
    bonus, stats = bonus_model.bonus(frames)
    assert bonus.shape == (6, 2) and bonus.dtype == torch.float32
    assert (bonus[-1] < bonus[0]).all()
    assert stats["frames_seen"] == 12.0 and bonus_model.frames_seen == 12
    assert stats["bonus_max"] == pytest.approx(float(bonus.max()))
    assert stats["bits_per_dim"] > 0 and stats["pseudo_counts"].dim() == 1


@pytest.mark.parametrize(
    "pg, update", [("exact", "per_frame"), ("first_order", "per_frame"), ("first_order", "per_batch")]
)
def test_state_dict_round_trip_resumes_identically(pg, update):
    config = PseudoCountConfig(pg=pg, update=update, image_size=10, optimizer="adam")
    generator = torch.Generator().manual_seed(5)
    first_batch, second_batch = _synthetic_frames(4, generator), _synthetic_frames(4, generator)
    torch.manual_seed(0)
    original = PseudoCountBonus(config)
    original.bonus(first_batch.view(2, 2, 4, 84, 84))
    restored = PseudoCountBonus(config)
    restored.load_state_dict(original.state_dict())
    assert restored.frames_seen == 4
    expected, _ = original.bonus(second_batch.view(2, 2, 4, 84, 84))
    resumed, _ = restored.bonus(second_batch.view(2, 2, 4, 84, 84))
    assert torch.equal(expected, resumed)


def test_sample_images_are_uint8_grey_frames():
    bonus = PseudoCountBonus(PseudoCountConfig(image_size=6))
    images = bonus.sample_images(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 6, 6) and images.dtype == torch.uint8
    allowed = {level * 255 // 7 for level in range(8)}
    assert set(images.unique().tolist()) <= allowed


def test_per_batch_mode_gains_are_the_per_sample_first_order_gains_and_the_model_learns():
    torch.manual_seed(0)
    bonus = PseudoCountBonus(PseudoCountConfig(pg="first_order", update="per_batch", image_size=12))
    frames = _synthetic_frames(4, torch.Generator().manual_seed(6))
    levels = bonus.preprocess(frames)
    expected_gains = bonus.prediction_gains(levels, "first_order")
    bits_before = bonus.bits_per_dim(levels)
    log_prob, gains = bonus.train_and_measure(levels)
    assert torch.allclose(gains, expected_gains)
    for _ in range(10):
        bonus.train_and_measure(levels)
    assert bonus.bits_per_dim(levels) < bits_before
    assert bonus.frames_seen == 44
