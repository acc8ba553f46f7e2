"""Tests of the Gated PixelCNN (agents/pixelcnn.py, agents/pixelcnn_layers.py).

The references are independent of the model code: raster order written out with Python
tuples, exhaustive enumeration of every image of a tiny size, Monte-Carlo frequencies for
the sampler, and a hand-written mask.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from agents.pixelcnn import GatedPixelCNN
from agents.pixelcnn_layers import GatedLayer, channel_groups, sub_pixel_mask


@pytest.fixture(autouse=True)
def _float64_one_thread():
    """float64 for exact zero/non-zero gradient checks; one thread (the CI box is shared)."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def _model(channels, levels, **overrides):
    settings = dict(layers=2, hidden_channels=12, kernel_size=3, first_kernel_size=3)
    settings.update(overrides)
    return GatedPixelCNN(channels, levels, **settings)


def _input_jacobian_support(model, channels, height, width, *, batch=8, cond=None, cond_map=None):
    """``support[c, i, j]`` = bool ``[C, H, W]`` of inputs with non-zero gradient on the
    logits of sub-pixel ``(c, i, j)``, summed in absolute value over a random batch."""
    x = torch.randn(batch, channels, height, width, requires_grad=True)
    logits = model.logits_from_scaled(x, cond, cond_map)  # [B, C, L, H, W]
    support = {}
    for c, i, j in itertools.product(range(channels), range(height), range(width)):
        (gradient,) = torch.autograd.grad(logits[:, c, :, i, j].sum(), x, retain_graph=True)
        support[c, i, j] = gradient.abs().sum(0) != 0
    return support


def _earlier(c_in, i_in, j_in, c_out, i_out, j_out):
    """Raster order with channels inside a pixel: is input sub-pixel strictly before output?"""
    return (i_in, j_in) < (i_out, j_out) or ((i_in, j_in) == (i_out, j_out) and c_in < c_out)


def _train_a_little(model, channels, levels, shape, steps=3):
    """Move the weights off their initial values so the masks are checked after updates."""
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        x = torch.randint(0, levels, (4, channels, *shape))
        cond = torch.randn(4, model.cond_size) if model.cond_size else None
        cond_map = torch.randn(4, model.cond_map_channels, *shape) if model.cond_map_channels else None
        optimiser.zero_grad()
        (-model.log_prob(x, cond, cond_map).mean()).backward()
        optimiser.step()


# ------------------------------------------------------------------------ masks

def test_sub_pixel_mask_matches_hand_written_rgb_masks():
    groups = torch.tensor([0, 1, 2])
    mask_a = sub_pixel_mask(groups, groups, (1, 2), include_own_group=False)
    mask_b = sub_pixel_mask(groups, groups, (1, 2), include_own_group=True)
    # current pixel tap (last column): A: R sees nothing, G sees R, B sees R, G.
    expected_a = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=mask_a.dtype)
    expected_b = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=mask_b.dtype)
    assert torch.equal(mask_a[:, :, 0, 1], expected_a)
    assert torch.equal(mask_b[:, :, 0, 1], expected_b)
    assert torch.equal(mask_a[:, :, 0, 0], torch.ones(3, 3))  # the pixel to the left: all visible
    assert channel_groups(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]


# ------------------------------------------------------------------------ the gated layer

def _layer(first=False, hidden=4):
    return GatedLayer(image_channels=1, in_channels=1 if first else hidden, hidden_channels=hidden,
                      kernel_size=3, first=first, cond_size=2, cond_map_channels=None)


def test_gate_is_tanh_of_f_half_times_sigmoid_of_g_half():
    layer = _layer(first=True)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.zero_()
        layer.horizontal_conv.bias.copy_(torch.tensor([0.3, -0.2, 0.5, 1.0, -1.5, 0.7, 2.0, -0.4]))
        layer.vertical_conv.bias.copy_(torch.tensor([1.1, 0.0, -0.6, 0.2, 0.9, -2.0, 0.1, 0.4]))
        layer.cond_horizontal.weight[:, 0] = torch.arange(8) * 0.1  # V h with h = (1, 0)
    x, cond = torch.zeros(1, 1, 3, 3), torch.tensor([[1.0, 0.0]])
    v_out, h_out, _ = layer(x, x, cond)
    f_h = torch.tensor([0.3, -0.2, 0.5, 1.0]) + torch.arange(4) * 0.1
    g_h = torch.tensor([-1.5, 0.7, 2.0, -0.4]) + torch.arange(4, 8) * 0.1
    f_v, g_v = torch.tensor([1.1, 0.0, -0.6, 0.2]), torch.tensor([0.9, -2.0, 0.1, 0.4])
    assert torch.allclose(h_out[0, :, 1, 1], torch.tanh(f_h) * torch.sigmoid(g_h))  # eq. 2 / eq. 4
    assert torch.allclose(v_out[0, :, 1, 1], torch.tanh(f_v) * torch.sigmoid(g_v))


def test_vertical_feeds_horizontal_but_never_the_other_way():
    torch.manual_seed(6)
    layer = _layer()
    v, h, cond = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5), torch.randn(2, 2)
    v_out, h_out, _ = layer(v, h, cond)
    v_out_other_h, _, _ = layer(v, h + torch.randn_like(h), cond)
    _, h_out_other_v, _ = layer(v + torch.randn_like(v), h, cond)
    assert torch.equal(v_out, v_out_other_h)
    assert not torch.allclose(h_out, h_out_other_v)


# ------------------------------------------------------------------------ causality and blind spot

CAUSALITY_CASES = {
    "rgb_3x3_kernels": dict(channels=3, levels=3, shape=(5, 5), layers=4, hidden_channels=24,
                            kernel_size=3, first_kernel_size=5),
    "grey_exploration_shape": dict(channels=1, levels=8, shape=(6, 7), layers=3, hidden_channels=16,
                                   kernel_size=1, first_kernel_size=7, cond_size=3, cond_map_channels=2),
}


@pytest.mark.parametrize("case", list(CAUSALITY_CASES))
def test_no_gradient_from_current_or_later_sub_pixels(case):
    settings = dict(CAUSALITY_CASES[case])
    channels, levels, (height, width) = settings.pop("channels"), settings.pop("levels"), settings.pop("shape")
    torch.manual_seed(0)
    model = GatedPixelCNN(channels, levels, **settings)
    _train_a_little(model, channels, levels, (height, width))
    cond = torch.randn(8, model.cond_size) if model.cond_size else None
    cond_map = torch.randn(8, model.cond_map_channels, height, width) if model.cond_map_channels else None
    support = _input_jacobian_support(model, channels, height, width, cond=cond, cond_map=cond_map)
    leaks = [
        (out, (c, i, j))
        for out, seen in support.items()
        for c, i, j in itertools.product(range(channels), range(height), range(width))
        if seen[c, i, j] and not _earlier(c, i, j, *out)
    ]
    assert leaks == [], f"outputs that see their own or later sub-pixels: {leaks[:5]}"


def test_no_blind_spot_every_earlier_sub_pixel_is_seen():
    settings = dict(CAUSALITY_CASES["rgb_3x3_kernels"])
    channels, levels, (height, width) = settings.pop("channels"), settings.pop("levels"), settings.pop("shape")
    torch.manual_seed(0)
    model = GatedPixelCNN(channels, levels, **settings)
    _train_a_little(model, channels, levels, (height, width))
    support = _input_jacobian_support(model, channels, height, width)
    blind = [
        (out, (c, i, j))
        for out, seen in support.items()
        for c, i, j in itertools.product(range(channels), range(height), range(width))
        if _earlier(c, i, j, *out) and not seen[c, i, j]
    ]
    # e.g. the classic blind spot: (4, 0) not seeing (3, 4), or (2, 2) not seeing (1, 4).
    assert blind == [], f"earlier sub-pixels with zero gradient: {blind[:5]}"


def test_exploration_shaped_model_sees_its_whole_7x7_causal_neighbourhood():
    """7×7 mask-A layer + 1×1 layers: the field is rows i-3..i-1 (columns j±3) and row i,
    columns j-3..j-1; every pixel in it must reach the output, none outside it."""
    settings = dict(CAUSALITY_CASES["grey_exploration_shape"])
    channels, levels, (height, width) = settings.pop("channels"), settings.pop("levels"), settings.pop("shape")
    torch.manual_seed(0)
    model = GatedPixelCNN(channels, levels, **settings)
    cond, cond_map = torch.randn(8, 3), torch.randn(8, 2, height, width)
    support = _input_jacobian_support(model, channels, height, width, cond=cond, cond_map=cond_map)
    for (_, i, j), seen in support.items():
        field = torch.zeros(height, width, dtype=torch.bool)
        for i_in, j_in in itertools.product(range(height), range(width)):
            above = i - 3 <= i_in < i and abs(j_in - j) <= 3
            left = i_in == i and j - 3 <= j_in < j
            field[i_in, j_in] = above or left
        assert torch.equal(seen[0], field), (i, j)


# ------------------------------------------------------------------------ normalisation

@pytest.mark.parametrize(
    "channels, levels, height, width, conditioned",
    [(1, 2, 2, 2, False), (3, 3, 1, 2, False), (3, 2, 1, 2, True)],
)
def test_probabilities_of_all_images_sum_to_one(channels, levels, height, width, conditioned):
    torch.manual_seed(1)
    model = _model(channels, levels, cond_size=2 if conditioned else None)
    every_image = torch.tensor(list(itertools.product(range(levels), repeat=channels * height * width)))
    every_image = every_image.view(-1, channels, height, width)
    cond = torch.randn(1, 2).expand(len(every_image), 2) if conditioned else None
    total = model.log_prob(every_image, cond).exp().sum()
    assert abs(float(total.detach()) - 1.0) < 1e-6


def test_log_prob_is_the_sum_of_per_sub_pixel_softmax_terms():
    torch.manual_seed(2)
    model = _model(3, 4)
    x = torch.randint(0, 4, (2, 3, 3, 3))
    logits = model.logits(x)  # [B, C, L, H, W]
    reference = torch.zeros(2)
    for b, c, i, j in itertools.product(range(2), range(3), range(3), range(3)):
        reference[b] += torch.log_softmax(logits[b, c, :, i, j], 0)[x[b, c, i, j]]
    assert torch.allclose(model.log_prob(x), reference)
    assert torch.allclose(model.bits_per_dim(x), -reference / (27 * torch.log(torch.tensor(2.0))))


# ------------------------------------------------------------------------ conditioning

def test_global_conditioning_changes_log_prob():
    torch.manual_seed(3)
    model = _model(1, 4, cond_size=5)
    x = torch.randint(0, 4, (3, 1, 4, 4))
    first, second = model.log_prob(x, torch.randn(3, 5)), model.log_prob(x, torch.randn(3, 5))
    assert (first - second).abs().min() > 1e-6


def test_map_conditioning_changes_log_prob_and_acts_locally():
    torch.manual_seed(4)
    model = _model(1, 4, cond_map_channels=2)
    x = torch.randint(0, 4, (3, 1, 4, 4))
    cond_map = torch.randn(3, 2, 4, 4)
    changed = cond_map.clone()
    changed[:, :, 3, 3] += 1.0  # the last pixel only
    assert (model.log_prob(x, cond_map=cond_map) - model.log_prob(x, cond_map=changed)).abs().min() > 1e-6
    # 1×1 conditioning: the logits of pixels whose receptive field excludes (3, 3) do not move.
    before, after = model.logits(x, cond_map=cond_map), model.logits(x, cond_map=changed)
    assert torch.equal(before[..., 0, :], after[..., 0, :])
    assert not torch.equal(before[..., 3, 3], after[..., 3, 3])


def test_conditioning_arguments_are_validated():
    model = _model(1, 4)
    with pytest.raises(ValueError, match="without cond_size"):
        model.log_prob(torch.zeros(1, 1, 2, 2, dtype=torch.int64), torch.zeros(1, 3))
    conditioned = _model(1, 4, cond_size=3)
    with pytest.raises(ValueError, match="pass cond"):
        conditioned.log_prob(torch.zeros(1, 1, 2, 2, dtype=torch.int64))


# ------------------------------------------------------------------------ sampling

def test_sample_frequencies_match_the_model_probabilities():
    torch.manual_seed(5)
    model = _model(1, 2)
    every_image = torch.tensor(list(itertools.product(range(2), repeat=2))).view(-1, 1, 1, 2)
    probabilities = model.log_prob(every_image).exp()
    samples = model.sample(4000, shape=(1, 2), generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4000, 1, 1, 2) and samples.dtype == torch.int64
    index = samples[:, 0, 0, 0] * 2 + samples[:, 0, 0, 1]
    frequencies = torch.bincount(index, minlength=4).double() / 4000
    # binomial standard error <= 0.008; 4 sigma
    assert torch.allclose(frequencies, probabilities.detach(), atol=0.032)


def test_row_cropped_sampler_draws_what_a_full_image_sampler_draws():
    """The sampler only feeds the rows in the receptive field; a naive full-image loop with
    the same random stream must produce the same images (image taller than the field)."""
    torch.manual_seed(7)
    model = _model(2, 3, layers=2, first_kernel_size=3, kernel_size=3, cond_map_channels=1)
    assert model.receptive_rows == 2
    height, width, n = 6, 3, 5
    cond_map = torch.randn(n, 1, height, width)
    fast = model.sample(n, cond_map=cond_map, shape=(height, width), generator=torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    naive = torch.zeros(n, 2, height, width, dtype=torch.int64)
    with torch.no_grad():
        for i, j, c in itertools.product(range(height), range(width), range(2)):
            probabilities = torch.softmax(model.logits(naive, cond_map=cond_map)[:, c, :, i, j].double(), -1)
            naive[:, c, i, j] = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
    assert torch.equal(fast, naive)


def test_row_logits_on_the_cropped_rows_equal_the_full_image_logits():
    torch.manual_seed(8)
    for settings in (
        dict(layers=3, first_kernel_size=5, kernel_size=3),
        dict(layers=3, first_kernel_size=7, kernel_size=1),
    ):
        model = _model(1, 4, **settings)
        x = torch.randint(0, 4, (3, 1, 9, 5))
        full = model.logits(x)
        for row in range(9):
            assert torch.allclose(model.row_logits(x, row), full[:, :, :, row], atol=1e-12), (settings, row)


# ------------------------------------------------------------------------ the plain (ungated) PixelCNN

from agents.pixelcnn_plain import PlainPixelCNN  # noqa: E402


def _plain(channels, levels, **overrides):
    settings = dict(layers=3, hidden_channels=12, kernel_size=3, first_kernel_size=3)
    settings.update(overrides)
    return PlainPixelCNN(channels, levels, **settings)


@pytest.mark.parametrize("channels", [1, 3])
def test_plain_pixelcnn_is_causal(channels):
    torch.manual_seed(0)
    height, width = 5, 5
    model = _plain(channels, 4)
    _train_a_little(model, channels, 4, (height, width))
    support = _input_jacobian_support(model, channels, height, width)
    leaks = [
        (out, (c, i, j))
        for out, seen in support.items()
        for c, i, j in itertools.product(range(channels), range(height), range(width))
        if seen[c, i, j] and not _earlier(c, i, j, *out)
    ]
    assert leaks == [], f"outputs that see their own or later sub-pixels: {leaks[:5]}"


def test_plain_pixelcnn_has_the_blind_spot_the_gated_model_removes():
    """Stacked masked 3×3 kernels: pixel (3, 1) never sees (2, 4), up and to the right
    (1606.05328 Fig. 1); the gated model with the same kernels does (test above)."""
    torch.manual_seed(0)
    model = _plain(1, 4, layers=4)
    support = _input_jacobian_support(model, 1, 5, 5)
    assert not support[0, 3, 1][0, 2, 4]
    assert support[0, 3, 1][0, 2, 2] and support[0, 3, 1][0, 3, 0]  # what it does see


def test_plain_pixelcnn_probabilities_of_all_images_sum_to_one():
    torch.manual_seed(1)
    model = _plain(3, 2)
    every_image = torch.tensor(list(itertools.product(range(2), repeat=3 * 1 * 2))).view(-1, 3, 1, 2)
    assert abs(float(model.log_prob(every_image).exp().sum().detach()) - 1.0) < 1e-6


def test_plain_pixelcnn_refuses_conditioning():
    with pytest.raises(ValueError, match="unconditional"):
        _plain(1, 4).log_prob(torch.zeros(1, 1, 3, 3, dtype=torch.int64), torch.zeros(1, 2))
