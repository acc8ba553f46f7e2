"""benchmarks.rllib_torso_alive: reads an RLlib checkpoint's first conv layer and counts the
channels that fire on random-play frames."""

import pickle

import numpy as np
import pytest

from benchmarks import rllib_torso_alive as alive


def _write_checkpoint(folder, bias: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    state = {
        f"{alive.FIRST_CONV}.weight": rng.normal(0.0, 0.05, (16, 4, 8, 8)).astype(np.float32),
        f"{alive.FIRST_CONV}.bias": np.full(16, bias, np.float32),
    }
    path = folder / alive.MODULE_STATE
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(state))
    return state


def test_counts_dead_and_live_channels(tmp_path, one_torch_thread):
    frames = alive.random_play_frames("pong", steps=8)
    assert frames.shape[1:] == (4, 84, 84) and 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0

    dead = tmp_path / "dead"
    _write_checkpoint(dead, bias=-100.0)  # no [0, 1] patch can lift a unit this far
    assert alive.alive_share(alive.first_layer(dead), frames) == 0.0

    live = tmp_path / "live"
    _write_checkpoint(live, bias=100.0)
    assert alive.alive_share(alive.first_layer(live), frames) == 1.0


def test_first_layer_is_the_checkpoints_weights(tmp_path):
    state = _write_checkpoint(tmp_path, bias=0.5, seed=3)
    conv = alive.first_layer(tmp_path)[0]
    assert np.array_equal(conv.weight.detach().numpy(), state[f"{alive.FIRST_CONV}.weight"])
    assert np.array_equal(conv.bias.detach().numpy(), state[f"{alive.FIRST_CONV}.bias"])
    assert conv.stride == (4, 4) and conv.padding == (0, 0)


def test_main_writes_json(tmp_path, one_torch_thread):
    _write_checkpoint(tmp_path / "ckpt", bias=-100.0)
    result = alive.main(["--checkpoint", str(tmp_path / "ckpt"), "--game", "pong", "--steps", "8",
                         "--fresh-seeds", "2", "--json", str(tmp_path / "out.json")])
    assert result["trained_alive"] == 0.0 and len(result["fresh_alive"]) == 2
    assert (tmp_path / "out.json").exists()


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="module_state.pkl"):
        alive.first_layer(tmp_path)
