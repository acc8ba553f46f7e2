"""The agent: episode resets, state packing, torsos."""

import pytest
import torch

from agents.registry import build_agent
from agent_settings import agent_options, make_agent


def _agent(obs_shape=(6,), actions=3):
    torch.manual_seed(0)
    return make_agent(obs_shape, actions, torso_size=16, core_options={"hidden_size": 8})


def test_first_flag_resets_state_and_previous_inputs():
    """Rows that start an episode must not depend on the old state, action or reward."""
    agent = _agent()
    B = 4
    obs = torch.randn(B, 6)
    first = torch.tensor([True, False, True, False])
    outputs = []
    for seed in (1, 2):
        g = torch.Generator().manual_seed(seed)
        state = {k: torch.randn(v.shape, generator=g) for k, v in agent.initial_state(B).items()}
        out, _ = agent.step(obs, torch.randint(0, 3, (B,), generator=g), torch.randn(B, generator=g), first, state)
        outputs.append(out.logits)
    torch.testing.assert_close(outputs[0][first], outputs[1][first], rtol=0, atol=0)
    assert not torch.allclose(outputs[0][~first], outputs[1][~first])


def test_pack_state_round_trips():
    agent = _agent()
    state = {k: torch.randn_like(v) for k, v in agent.initial_state(3).items()}
    unpacked = agent.unpack_state(agent.pack_state(state))
    assert all(torch.equal(unpacked[k], state[k]) for k in state)


@pytest.mark.parametrize("torso", ["shallow", "deep"])
def test_image_torsos_accept_uint8_frames(torso):
    agent = make_agent((4, 84, 84), 18, torso=torso, core_options={"hidden_size": 32})
    frames = torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)
    out, state = agent.step(frames, torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.ones(2, dtype=torch.bool),
                            agent.initial_state(2))
    assert out.logits.shape == (2, 18) and out.value.shape == (2,)
    out.value.sum().backward()
    assert all(p.grad is not None for p in agent.torso.parameters())


def test_unknown_core_and_torso_fail_clearly():
    with pytest.raises(ValueError, match="unknown core 'lstmm'"):
        build_agent((4,), 2, **{**agent_options(), "core": "lstmm"})
    with pytest.raises(ValueError, match="unknown torso"):
        build_agent((4,), 2, **agent_options(torso="resnet50"))


def test_orthogonal_init_gives_orthogonal_rows_of_the_stated_gains():
    import math


    torch.manual_seed(0)
    agent = make_agent((4, 84, 84), 6, torso="shallow", core="lstm", core_options={"hidden_size": 32}, init="orthogonal")
    conv = agent.torso.convs[0].weight.flatten(1)  # [16, 256]: 16 orthogonal rows
    assert torch.allclose(conv @ conv.T, 2.0 * torch.eye(16), atol=1e-4)
    head = agent.policy_head.weight  # [6, 32]
    assert torch.allclose(head @ head.T, 1e-4 * torch.eye(6), atol=1e-7)
    assert float(agent.value_head.weight.norm()) == pytest.approx(1.0, rel=1e-4)
    assert all(float(m.bias.abs().max()) == 0.0 for m in (agent.torso.fc, agent.policy_head, agent.value_head))
    torch_default = make_agent((4, 84, 84), 6, torso="shallow", core="lstm", core_options={"hidden_size": 32}, init="torch")
    assert not torch.allclose(torch_default.torso.convs[0].weight.flatten(1) @ torch_default.torso.convs[0].weight.flatten(1).T,
                              2.0 * torch.eye(16), atol=1e-2)


def test_centred_frames_make_the_torso_blind_to_a_uniform_background_shift():
    from agents.torsos import ShallowTorso

    torch.manual_seed(0)
    frames = torch.randint(0, 100, (2, 4, 84, 84), dtype=torch.uint8)
    brighter = frames + 60  # the same scene on a brighter background
    centred = ShallowTorso((4, 84, 84), center_frames="mean")
    plain = ShallowTorso((4, 84, 84))
    plain.load_state_dict(centred.state_dict())
    assert torch.allclose(centred(frames), centred(brighter), atol=1e-5)
    assert not torch.allclose(plain(frames), plain(brighter), atol=1e-3)
    uniform = torch.full((1, 4, 84, 84), 87, dtype=torch.uint8)  # Pong's background grey
    first_layer_input = []
    centred.convs[0].register_forward_pre_hook(lambda _m, args: first_layer_input.append(args[0]))
    centred(uniform)
    assert float(first_layer_input[0].abs().max()) < 1e-6


def test_background_centring_zeroes_the_field_and_leaves_a_black_background_and_the_objects_alone():
    from agents.torsos import ShallowTorso, _scale_frames

    weight = torch.zeros(1)
    pong = torch.full((1, 4, 84, 84), 87, dtype=torch.uint8)  # a grey field with a white paddle
    pong[..., 30:46, 70:72] = 236
    centred = _scale_frames(pong, weight, "background")
    assert float(centred[..., :20, :20].abs().max()) == 0.0
    assert torch.allclose(centred[..., 30:46, 70:72], torch.tensor((236 - 87) / 255.0))
    breakout = torch.zeros((1, 4, 84, 84), dtype=torch.uint8)  # black, with bricks over a sixth of it
    breakout[..., 10:24, :] = 140
    assert torch.equal(_scale_frames(breakout, weight, "background"), _scale_frames(breakout, weight, "none"))
    assert not torch.allclose(_scale_frames(breakout, weight, "mean"), _scale_frames(breakout, weight, "none"))
    with pytest.raises(ValueError, match="background"):
        _scale_frames(breakout, weight, "median")
    torso = ShallowTorso((4, 84, 84), center_frames="background")
    assert torch.isfinite(torso(pong)).all()


def _sam_outputs_with_scaled_features(feature_norm: bool, scale: float):
    torch.manual_seed(0)
    agent = make_agent((6,), 3, torso_size=16, core="sam", feature_norm=feature_norm,
                       core_options={"hidden_size": 16, "memory_slots": 8, "word_size": 4, "num_heads": 1, "top_k": 2})
    with torch.no_grad():  # the core's last layer makes its features: scaling it scales them
        agent.core.output.weight.mul_(scale)
        agent.core.output.bias.mul_(scale)
    obs, first = torch.randn(2, 6, generator=torch.Generator().manual_seed(1)), torch.ones(2, dtype=torch.bool)
    out, _ = agent.step(obs, torch.zeros(2, dtype=torch.long), torch.zeros(2), first, agent.initial_state(2))
    return out.logits, out.value


def test_with_feature_norm_the_heads_do_not_see_the_scale_of_the_cores_features():
    for scale in (10.0, 100.0):  # (shrinking instead would meet LayerNorm's ε)
        torch.testing.assert_close(_sam_outputs_with_scaled_features(True, scale), _sam_outputs_with_scaled_features(True, 1.0),
                                   rtol=1e-3, atol=1e-3)
    plain_logits = _sam_outputs_with_scaled_features(False, 10.0)[0]
    assert not torch.allclose(plain_logits, _sam_outputs_with_scaled_features(False, 1.0)[0], atol=1e-2)


def test_without_feature_norm_the_agent_keeps_its_parameters():
    """Checkpoints written before the option load unchanged: it adds no parameter when off."""
    plain = make_agent((6,), 3, torso_size=16, core_options={"hidden_size": 8})
    normed = make_agent((6,), 3, torso_size=16, core_options={"hidden_size": 8}, feature_norm=True)
    assert not any(name.startswith("feature_norm") for name in plain.state_dict())
    assert {"feature_norm.weight", "feature_norm.bias"} <= set(normed.state_dict())
