"""`engram eval`: episode bookkeeping, seeding, clear errors and videos, on untrained agents.

No training: each checkpoint is written here with the payload layout `engram train` uses,
holding a freshly initialised (or hand-set) agent.
"""

import json
import sys

import numpy as np
import pytest
import torch

from engram import build
from engram.checkpoint import CheckpointError, Checkpointer
from engram.cli import main
from engram.config import ConfigError, load_config
from engram.evaluate import VideoError, evaluate, observation_to_frame
from envs.memory_cue import MemoryCueVectorEnv

SMOKE_DELAY = 4  # configs/smoke.yaml: memory_cue.delay
MAZE_OVERRIDES = [
    "env.maze.options={size: 5, pixel_scale: 8, max_steps: 10}",
    "agent.torso_size=32",
    "agent.lstm.hidden_size=16",
]


def _write_checkpoint(directory, config, adjust_agent=None):
    """A ckpt-*.pt laid out like engram.train's, holding an untrained agent."""
    torch.manual_seed(0)
    agent = build.agent_factory(config, build.probe_env(config))()
    if adjust_agent is not None:
        adjust_agent(agent)
    payload = {
        "format": 1,
        "config": config.model_dump(mode="json"),
        "learner": {"agent": agent.state_dict(), "updates": 0, "skipped_updates": 0},
        "progress": {},
        "rng": {"torch": torch.get_rng_state(), "python": [0]},
    }
    return Checkpointer(directory).save(payload, 1)


def _always_first_action(agent):
    """Policy logits favour action 0 whatever the input: greedy play always picks 0 (sampling
    picks 1 about 38% of the time)."""
    with torch.no_grad():
        agent.policy_head.weight.zero_()
        agent.policy_head.bias.copy_(torch.tensor([0.5, 0.0]))


def _record_each_agent_step(monkeypatch, record):
    """Make the agent `evaluate` builds call ``record(step arguments)`` before each of its steps."""
    make_agent_factory = build.agent_factory

    def spying_agent_factory(config, spec):
        agent = make_agent_factory(config, spec)()
        step = agent.step

        def recording_step(*args):
            record(*args)
            return step(*args)

        agent.step = recording_step
        return lambda: agent

    monkeypatch.setattr(build, "agent_factory", spying_agent_factory)


@pytest.fixture(scope="module")
def smoke_config():
    assert load_config("configs/smoke.yaml").env.memory_cue.delay == SMOKE_DELAY
    return load_config("configs/smoke.yaml")


@pytest.fixture(scope="module")
def smoke_checkpoint(tmp_path_factory, smoke_config):
    return _write_checkpoint(tmp_path_factory.mktemp("smoke"), smoke_config)


@pytest.fixture(scope="module")
def maze_checkpoint(tmp_path_factory):
    config = load_config("configs/maze_lstm.yaml", MAZE_OVERRIDES)
    return _write_checkpoint(tmp_path_factory.mktemp("maze"), config)


@pytest.mark.parametrize("episodes", [1, 5, 11])
def test_counts_exactly_the_requested_episodes(smoke_checkpoint, episodes):
    result = evaluate(smoke_checkpoint, episodes=episodes, verbose=False)
    assert result["complete"]
    assert result["num_envs"] == min(episodes, 8)
    assert len(result["returns"]) == len(result["lengths"]) == episodes
    assert set(result["returns"]) <= {-1.0, 1.0}
    assert result["lengths"] == [SMOKE_DELAY + 2] * episodes
    assert result["return"]["mean"] == pytest.approx(np.mean(result["returns"]))
    assert result["return"]["min"] == min(result["returns"]) and result["return"]["max"] == max(result["returns"])
    json.dumps(result)


def test_greedy_returns_match_an_independent_replay_of_the_env(tmp_path, smoke_config):
    """A policy that always answers cue 0 scores +1 exactly on the episodes whose cue is 0.

    11 episodes on 8 envs: every env finishes its first episode at step 6, then envs 0-2
    (quota 2) finish a second at step 12; no other episode may be counted.
    """
    checkpoint = _write_checkpoint(tmp_path, smoke_config, _always_first_action)
    seed = 7
    result = evaluate(checkpoint, episodes=11, seed=seed, greedy=True, verbose=False)

    env = MemoryCueVectorEnv(8, delay=SMOKE_DELAY, seed=seed)
    env.reset(seed=seed)
    per_round = []
    for _ in range(2):
        for _ in range(SMOKE_DELAY + 2):
            _, rewards, terminated, _, _ = env.step(np.zeros(8, np.int64))
        assert terminated.all()
        per_round.append(rewards.tolist())
    assert result["returns"] == per_round[0] + per_round[1][:3]
    assert result["env_steps"] == 2 * (SMOKE_DELAY + 2) * 8


def test_same_seed_same_episodes_and_the_callers_rng_is_untouched(smoke_checkpoint):
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = evaluate(smoke_checkpoint, episodes=16, seed=3, verbose=False)
    assert torch.equal(torch.rand(3), expected_draw)
    again = evaluate(smoke_checkpoint, episodes=16, seed=3, verbose=False)
    other = evaluate(smoke_checkpoint, episodes=16, seed=4, verbose=False)
    assert first["returns"] == again["returns"]
    assert first["returns"] != other["returns"]  # 16 coin flips: equal with probability 2**-16


def test_agent_is_told_where_episodes_begin(smoke_checkpoint, monkeypatch):
    """``first`` is True on each episode's first observation (SAME_STEP autoreset) only."""
    firsts_seen = []
    _record_each_agent_step(
        monkeypatch, lambda obs, prev_action, prev_reward, first, *rest: firsts_seen.append(first.numpy().copy())
    )
    evaluate(smoke_checkpoint, episodes=16, verbose=False)  # 8 envs, two episodes each
    episode_length = SMOKE_DELAY + 2
    assert len(firsts_seen) == 2 * episode_length
    for t, first in enumerate(firsts_seen):
        assert first.tolist() == [t % episode_length == 0] * 8, t


def test_play_uses_the_actors_thread_count_and_gives_the_callers_back(smoke_checkpoint, monkeypatch):
    """Small-batch play on more intra-op threads than idle cores crawls; the caller's setting returns after."""
    threads_seen = []
    _record_each_agent_step(monkeypatch, lambda *args: threads_seen.append(torch.get_num_threads()))
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        evaluate(smoke_checkpoint, episodes=2, verbose=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller_threads)
    assert threads_seen and set(threads_seen) == {1}  # resources.actor_torch_threads' default


def test_max_steps_stops_an_unfinished_evaluation(smoke_checkpoint):
    result = evaluate(smoke_checkpoint, episodes=3, max_steps=SMOKE_DELAY + 1, verbose=False)
    assert not result["complete"]
    assert result["returns"] == [] and result["return"]["mean"] is None
    assert result["env_steps"] == (SMOKE_DELAY + 1) * 3


def test_cli_prints_the_table(smoke_checkpoint, capsys):
    assert main(["eval", str(smoke_checkpoint), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "return mean" in out and "over 3 episodes" in out


def test_cli_missing_checkpoint_exits_2_naming_the_path(tmp_path, capsys):
    missing = tmp_path / "runs" / "ckpt-000000000042.pt"
    assert main(["eval", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_cli_corrupt_checkpoint_exits_2(tmp_path, smoke_checkpoint, capsys):
    corrupt = tmp_path / "ckpt-000000000001.pt"
    corrupt.write_bytes(smoke_checkpoint.read_bytes()[:100])
    assert main(["eval", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert "unreadable" in err and str(corrupt) in err


def test_cli_plays_the_newest_checkpoint_of_a_folder_and_names_an_empty_one(tmp_path, smoke_checkpoint, capsys):
    # smoke_checkpoint lies in <folder>/ckpt-*.pt, the layout of a run's checkpoints/
    assert main(["eval", str(smoke_checkpoint.parent), "--episodes", "1"]) == 0
    assert "over 1 episodes" in capsys.readouterr().out
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no ckpt-*.pt" in err and "does not exist" not in err


def test_cli_text_file_is_named_as_not_a_checkpoint(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    assert main(["eval", str(text)]) == 2
    err = capsys.readouterr().err
    assert "not a checkpoint file" in err and str(text) in err


def test_memory_task_checkpoint_without_readout_is_refused_clearly(tmp_path, smoke_config, capsys):
    tree = smoke_config.model_dump(mode="json")
    tree["run"]["kind"] = "memory_task"
    path = Checkpointer(tmp_path).save({"format": 1, "config": tree, "core": {}, "result": {}}, 5)
    with pytest.raises(CheckpointError, match="memory_task"):
        evaluate(path, verbose=False)
    assert main(["eval", str(path)]) == 2
    assert "memory_task" in capsys.readouterr().err


def test_memory_task_checkpoint_is_evaluated_at_the_asked_levels(tmp_path, capsys):
    """A trained copy-task checkpoint is rebuilt and scored on fresh sequences; the scores
    equal an independent evaluation of the same weights on the same sequences."""
    import numpy as np

    from agents.registry import core_factory
    from envs.memory_tasks import make_task
    from learners.memory_task_trainer import evaluate_levels_of

    config = load_config("configs/copy_sam.yaml", [
        "agent.core=lstm", "agent.memory.hidden_size=8", "memory_task.updates=3", "memory_task.batch_size=2",
        "telemetry.console=false",
    ])
    from engram.train import train

    run = train(config, tmp_path / "copy")
    path = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    result = evaluate(path, levels=[2, 5], sequences=6, seed=3, verbose=False)
    payload = torch.load(path, weights_only=False)
    task = make_task("copy", bits=6)
    core = core_factory("lstm", task.target_size, config.agent.core_options())(task.input_size)
    core.load_state_dict(payload["core"])
    readout = torch.nn.Linear(core.output_size, task.target_size)
    readout.load_state_dict(payload["readout"])
    expected = evaluate_levels_of(task, core, readout, [2, 5], 6, np.random.default_rng(3))
    for level in (2, 5):
        assert result["levels"][level]["solved"] == expected[f"eval/solved_L{level}"]
        assert result["levels"][level]["bits_error"] == expected[f"eval/bits_error_L{level}"]
    assert main(["eval", str(path), "--levels", "2,3", "--sequences", "4"]) == 0
    assert "wrong bits/seq" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        main(["eval", str(path), "--levels", "2,x"])
    assert exit_info.value.code == 2 and "comma-separated" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--video"):
        evaluate(path, video=tmp_path / "v.gif")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, smoke_config):
    bigger = load_config("configs/smoke.yaml", ["agent.lstm.hidden_size=32"])
    path = _write_checkpoint(tmp_path, bigger)
    payload = torch.load(path, weights_only=True)
    payload["config"] = smoke_config.model_dump(mode="json")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        evaluate(path, verbose=False)


def test_video_of_vector_observations_is_a_clear_error(smoke_checkpoint, tmp_path, capsys):
    assert main(["eval", str(smoke_checkpoint), "--video", str(tmp_path / "cue.gif")]) == 2
    assert "vector observations" in capsys.readouterr().err
    assert not (tmp_path / "cue.gif").exists()


def test_maze_gif_is_a_multi_frame_image_of_the_first_episode(maze_checkpoint, tmp_path):
    from PIL import Image

    target = tmp_path / "videos" / "maze.gif"
    result = evaluate(maze_checkpoint, episodes=2, video=target, verbose=False)
    assert result["num_envs"] == 1 and len(result["returns"]) == 2
    # Every observation of the first episode, plus its final frame (from info["final_obs"]).
    assert result["video_frames"] == result["lengths"][0] + 1
    with Image.open(target) as gif:
        assert gif.format == "GIF"
        assert gif.size == (240, 240)  # 5 maze pixels × pixel_scale 8, enlarged ×6
        # Pillow merges identical consecutive frames (a move into a wall), hence ≤.
        assert 1 < gif.n_frames <= result["video_frames"]


def test_unsupported_video_suffix(maze_checkpoint, tmp_path):
    with pytest.raises(VideoError, match="use .gif or .mp4"):
        evaluate(maze_checkpoint, episodes=1, video=tmp_path / "maze.avi", verbose=False)


def test_mp4_without_imageio_suggests_gif_or_install(maze_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio", None)  # makes `import imageio` fail
    with pytest.raises(VideoError, match=r"pip install imageio imageio-ffmpeg.*\.gif"):
        evaluate(maze_checkpoint, episodes=1, video=tmp_path / "maze.mp4", verbose=False)


def test_maze_mp4_with_the_video_extra(maze_checkpoint, tmp_path):
    import imageio_ffmpeg  # noqa: F401  (`make` installs the `video` extra)

    target = tmp_path / "maze.mp4"
    evaluate(maze_checkpoint, episodes=1, video=target, verbose=False)
    assert target.read_bytes()[4:8] == b"ftyp"


def test_atari_frames_show_the_newest_stacked_frame():
    stack = np.zeros((4, 84, 84), np.uint8)
    stack[-1, 10, 20] = 200
    frame = observation_to_frame(stack, "atari")
    assert frame.shape == (84, 84) and frame[10, 20] == 200 and frame.sum() == 200


def test_maze_frames_colour_walls_agent_and_goal():
    observation = np.zeros((3, 5, 5), np.uint8)
    observation[0, 0, :] = 255  # a wall row
    observation[1, 2, 2] = 255  # agent
    observation[2, 3, 3] = 255  # goal
    frame = observation_to_frame(observation, "maze")
    assert frame.shape == (5, 5, 3)
    assert frame[0, 0].tolist() == [40, 60, 200]
    assert frame[2, 2].tolist() == [220, 30, 30] and frame[3, 3].tolist() == [30, 200, 30]
    assert frame[4, 4].tolist() == [0, 0, 0]
