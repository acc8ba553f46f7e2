"""The dead-unit meter: a unit counts as alive if it is positive for any input."""

import torch

from agents.torsos import ShallowTorso, VectorTorso
from learners.torso_health import alive_fractions


def test_a_fresh_shallow_torso_is_mostly_alive_and_a_killed_channel_counts_as_dead():
    torch.manual_seed(0)
    torso = ShallowTorso((4, 84, 84))
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    shares = alive_fractions(torso, frames)
    assert set(shares) == {"torso/alive/convs_1", "torso/alive/convs_3", "torso/alive/output"}
    before = shares["torso/alive/convs_1"]
    with torch.no_grad():  # a channel whose weights and bias are all negative never fires on pixels ≥ 0
        torso.convs[0].weight[:4] = -torso.convs[0].weight[:4].abs()
        torso.convs[0].bias[:4] = -1.0
    assert alive_fractions(torso, frames)["torso/alive/convs_1"] <= before - 4 / 16 + 1e-6


def test_a_torso_whose_units_all_die_reads_zero():
    torso = VectorTorso((3,), 8)
    with torch.no_grad():
        for layer in (torso.layers[0], torso.layers[2]):
            layer.weight.zero_()
            layer.bias.fill_(-1.0)
    shares = alive_fractions(torso, torch.randn(16, 3))
    assert shares == {"torso/alive/layers_1": 0.0, "torso/alive/layers_3": 0.0, "torso/alive/output": 0.0}
