"""Tests of the density-model runs (``run.kind: density``): the image set's handling, the
conditioning paths (class one-hot, the autoencoder's code), the trainer's bookkeeping, and
`engram train` / `engram eval` end to end on a tiny model.

References: scikit-learn's own arrays for the data, exhaustive enumeration for
normalisation, gradients for "the decoder's gradient reaches the encoder".
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
import torch

from agents.pixelcnn import GatedPixelCNN
from agents.pixelcnn_autoencoder import ConvEncoder, PixelCNNAutoencoder
from engram.config import ConfigError, from_dict
from envs.image_sets import load_image_set
from learners.density_trainer import (
    DensityModelSpec,
    ImageDensity,
    evaluate_bits_per_dim,
    tensors,
    train_density,
)

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _spec(model="gated", conditioning="none", **overrides):
    settings = dict(layers=2, hidden_channels=8, kernel_size=3, first_kernel_size=3, code_size=3)
    settings.update(overrides)
    return DensityModelSpec(model=model, conditioning=conditioning, **settings)


def _density(conditioning="none", model="gated", levels=17, shape=(8, 8), **overrides):
    return ImageDensity.build(_spec(model, conditioning, **overrides), channels=1, levels=levels, image_shape=shape,
                              num_classes=10)


# ------------------------------------------------------------------------ the image set

def test_digits_at_17_levels_are_scikit_learns_values_split_without_overlap():
    data = load_image_set("digits", levels=17, test_fraction=0.2)
    reference = sklearn_datasets.load_digits()
    train_test = np.concatenate([data.train.images, data.test.images])[:, 0]
    labels = np.concatenate([data.train.labels, data.test.labels])
    assert len(train_test) == len(reference.images) == 1797
    # every image of the package appears exactly once, with its own label
    key = lambda image, label: (label, image.astype(np.int64).tobytes())
    assert sorted(key(i, l) for i, l in zip(train_test, labels)) == sorted(
        key(i, l) for i, l in zip(reference.images, reference.target))
    for label in range(10):
        share = int((data.test.labels == label).sum()) / int((labels == label).sum())
        assert abs(share - 0.2) < 0.02, (label, share)


def test_quantisation_and_a_split_that_does_not_depend_on_the_levels():
    coarse = load_image_set("digits", levels=2, test_fraction=0.2)
    full = load_image_set("digits", levels=17, test_fraction=0.2)
    assert np.array_equal(coarse.test.labels, full.test.labels)
    assert np.array_equal(coarse.test.images, (full.test.images >= 9).astype(np.int64))  # v·2 // 17 is 1 from v = 9 on
    assert set(np.unique(coarse.train.images).tolist()) == {0, 1}


def test_image_set_errors_name_the_problem(monkeypatch):
    with pytest.raises(ValueError, match="levels must lie"):
        load_image_set("digits", levels=18, test_fraction=0.2)
    with pytest.raises(ValueError, match="unknown image set"):
        load_image_set("mnist", levels=2, test_fraction=0.2)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="scikit-learn"):
        load_image_set("digits", levels=2, test_fraction=0.2)


# ------------------------------------------------------------------------ conditioning

def test_class_conditioning_reaches_the_likelihood_and_each_class_is_normalised():
    torch.manual_seed(0)
    density = _density("class", levels=2, shape=(2, 2))
    every_image = torch.tensor(list(itertools.product(range(2), repeat=4))).view(-1, 1, 2, 2)
    totals = []
    for label in range(10):
        labels = torch.full((len(every_image),), label)
        bits = density.bits_per_dim(every_image, labels)
        totals.append(float(torch.exp2(-bits * 4).sum().detach()))
    assert all(abs(total - 1.0) < 1e-5 for total in totals)
    x = torch.randint(0, 2, (3, 1, 2, 2))
    assert (density.bits_per_dim(x, torch.zeros(3)) - density.bits_per_dim(x, torch.ones(3))).abs().min() > 1e-6


def test_an_unconditional_model_ignores_the_labels():
    torch.manual_seed(0)
    density = _density("none")
    x = torch.randint(0, 17, (3, 1, 8, 8))
    assert torch.equal(density.bits_per_dim(x, torch.zeros(3)), density.bits_per_dim(x, torch.full((3,), 7)))


def test_the_decoders_gradient_reaches_the_encoder_through_the_code():
    torch.manual_seed(0)
    density = _density("autoencoder")
    x = torch.randint(0, 17, (4, 1, 8, 8))
    density.bits_per_dim(x, torch.zeros(4)).mean().backward()
    encoder_gradient = sum(float(p.grad.abs().sum()) for p in density.model.encoder.parameters())
    assert encoder_gradient > 0
    # the only way in is the code: cut it and the encoder gets no gradient
    density.zero_grad()
    code = density.model.encode(x).detach()
    density.model.decoder.bits_per_dim(x, code).mean().backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in density.model.encoder.parameters())


def test_the_decoder_given_a_fixed_code_is_normalised():
    torch.manual_seed(0)
    decoder = GatedPixelCNN(1, 2, layers=2, hidden_channels=8, kernel_size=3, first_kernel_size=3, cond_size=3)
    autoencoder = PixelCNNAutoencoder(ConvEncoder(1, (2, 2), 3), decoder)
    every_image = torch.tensor(list(itertools.product(range(2), repeat=4))).view(-1, 1, 2, 2)
    code = autoencoder.encode(every_image[5:6]).expand(len(every_image), 3)
    assert abs(float(decoder.log_prob(every_image, code).exp().sum().detach()) - 1.0) < 1e-5
    with pytest.raises(ValueError, match="cond_size"):
        PixelCNNAutoencoder(ConvEncoder(1, (2, 2), 4), decoder)


def test_samples_per_class_have_the_asked_shape_and_levels():
    torch.manual_seed(0)
    for conditioning in ("none", "class", "autoencoder"):
        drawn = _density(conditioning, levels=3, shape=(3, 3)).samples_per_class(2, (3, 3), torch.Generator().manual_seed(0))
        assert drawn.shape == (10, 2, 1, 3, 3) and 0 <= int(drawn.min()) and int(drawn.max()) < 3


def test_the_plain_model_cannot_be_conditioned():
    with pytest.raises(ValueError, match="unconditional"):
        _density("class", model="plain")
    with pytest.raises(ConfigError, match="density.conditioning=none"):
        _config(model="plain", conditioning="class")
    with pytest.raises(ConfigError, match="must be odd"):
        _config(kernel_size=4)


# ------------------------------------------------------------------------ the trainer

def test_per_class_bits_are_the_means_over_each_class():
    torch.manual_seed(0)
    data = load_image_set("digits", levels=4, test_fraction=0.1)
    density = _density("class", levels=4)
    scores = evaluate_bits_per_dim(density, data.test, 10, batch_size=7)  # batches that cut classes
    with torch.no_grad():
        images, labels = tensors(data.test)
        bits = density.bits_per_dim(images, labels)
    assert scores["all"] == pytest.approx(float(bits.mean()), rel=1e-5)
    for label in range(10):
        assert scores["per_class"][label] == pytest.approx(float(bits[labels == label].mean()), rel=1e-5)


def test_train_density_records_its_curve_and_best_point():
    torch.manual_seed(0)
    data = load_image_set("digits", levels=4, test_fraction=0.1)
    result = train_density(_density("none", levels=4), data, updates=7, batch_size=8, learning_rate=1e-3, seed=0,
                           evaluate_every=3)
    assert [point["update"] for point in result["curve"]] == [3, 6, 7]
    assert result["best_test_bits_per_dim"] == min(point["test_bits_per_dim"] for point in result["curve"])
    assert result["test_bits_per_dim"] == result["curve"][-1]["test_bits_per_dim"]
    with pytest.raises(ValueError, match="must be >= 1"):
        train_density(_density(), data, updates=0, batch_size=8, learning_rate=1e-3, seed=0, evaluate_every=1)


# ------------------------------------------------------------------------ engram train / eval

def _config(**density):
    settings = dict(updates=6, evaluate_every=3, layers=2, hidden_channels=8, samples_per_class=2, levels=4)
    settings.update(density)
    return from_dict({"run": {"kind": "density", "name": "tiny"}, "density": settings,
                      "telemetry": {"console": False}})


@pytest.mark.e2e
@pytest.mark.parametrize("conditioning", ["class", "autoencoder"])
def test_train_then_eval_a_density_run(tmp_path, conditioning):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from engram.evaluate import evaluate
    from engram.train import train

    run_dir = train(_config(conditioning=conditioning), str(tmp_path / "run"))
    result = json.loads((run_dir / "density_result.json").read_text())
    assert result["conditioning"] == conditioning and len(result["per_class"]) == 10
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    expected = {"density/samples_per_class"} | (
        {"density/reconstructions", "density/samples_fixed_code"} if conditioning == "autoencoder" else set())
    assert set(events.Tags()["images"]) == expected
    assert "density/test_bits_per_dim/class_9" in events.Tags()["scalars"]
    scored = evaluate(run_dir / "checkpoints", verbose=False)
    assert scored["test_bits_per_dim"] == pytest.approx(result["test_bits_per_dim"], rel=1e-6)


def test_a_density_run_without_scikit_learn_fails_before_writing_its_folder(tmp_path, monkeypatch):
    from engram.train import train

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ConfigError, match="scikit-learn"):
        train(_config(), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
