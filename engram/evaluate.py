"""`engram eval`: play whole episodes with a trained checkpoint, in this process (no Ray).

The checkpoint carries its resolved config, so the env and the agent are rebuilt exactly as
training built them. One vector of ``min(episodes, 8)`` envs is stepped (one env when a
video is recorded). Each env plays a fixed quota of episodes (the quotas sum to
``episodes``), and an env's episodes beyond its quota are stepped but not counted: taking
"the first N episodes to finish" across parallel envs would favour short episodes.

The envs are stepped by :class:`actors.stepping.EnvStepper`, the loop the rollout actors use
(``SAME_STEP`` autoreset, ``first`` on each episode's first observation), on the actors' torch
thread count (``resources.actor_torch_threads``). Returns are the raw env rewards, unclipped.

Videos (``video=PATH``) hold the first episode of env 0:

* ``.gif`` is written with Pillow (always installed);
* ``.mp4`` needs the optional ``imageio`` + ``imageio-ffmpeg`` packages.

Atari observations (``uint8 [frame_stack, 84, 84]`` greyscale) are shown by their newest
frame; maze observations (``uint8 [3, H, W]``, channels walls / agent / goal) are coloured.
Both are enlarged by nearest-neighbour repetition to about 250 pixels. MemoryCue
observations are float vectors, not images: asking for a video of them is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actors.stepping import EnvStepper
from engram import build
from engram.checkpoint import CheckpointError, load_checkpoint, newest_in
from engram.checkpoint_payload import read_payload
from engram.config import Config, ConfigError, from_dict

log = logging.getLogger("engram.evaluate")

MAX_PARALLEL_ENVS = 8
DEFAULT_MAX_STEPS = 1_000_000
"""Safety cap on vector-env steps; the envs' own episode caps normally end play far sooner."""
DEFAULT_MAX_VIDEO_FRAMES = 10_000
VIDEO_TARGET_SIDE = 252
"""Frames are enlarged by the largest whole factor that keeps them within this side (84 → ×3)."""
FRAMES_PER_SECOND = {"atari": 15, "maze": 8}
"""Atari: 60 Hz emulator / frameskip 4. Maze: slow enough to follow the agent."""
MAZE_COLOURS = {"wall": (40, 60, 200), "goal": (30, 200, 30), "agent": (220, 30, 30)}


class VideoError(ConfigError):
    """A video that cannot be written (wrong env kind, suffix or missing backend).

    A :class:`ConfigError`, so ``engram eval`` reports it as a usage error (exit status 2).
    """


# --- checkpoint -------------------------------------------------------------------------
def _load_payload(path: str | Path) -> tuple[Config, dict]:
    """The checkpoint's config and whole payload; :class:`CheckpointError` if unusable."""
    if Path(path).is_dir():
        path = newest_in(path)
        log.info("playing the newest checkpoint of the folder: %s", path)
    payload = read_payload(load_checkpoint(path), str(path))
    return from_dict(payload["config"]), payload


def _policy_weights(config: Config, payload: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """The agent weights of an RL checkpoint's payload; :class:`CheckpointError` if absent."""
    if config.run.kind == "memory_task":
        raise CheckpointError(
            f"checkpoint {str(path)!r} is from a run.kind: memory_task run (a core trained on "
            f"{config.memory_task.task}, with no policy or env); it has no episodes to play"
        )
    return payload["learner"]["agent"]  # read_payload checked it is there


# --- video ------------------------------------------------------------------------------
def _check_video_request(path: Path, env_kind: str) -> None:
    """Fail before playing if ``path`` cannot be written for this env."""
    if env_kind not in FRAMES_PER_SECOND:
        raise VideoError(
            f"--video: env.kind {env_kind} has vector observations, not images; videos are for atari and maze runs"
        )
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        try:
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise VideoError(
                f"--video {path}: writing .mp4 needs imageio and imageio-ffmpeg "
                "(pip install imageio imageio-ffmpeg); or write a .gif, which needs nothing more"
            ) from None
    elif suffix != ".gif":
        raise VideoError(f"--video {path}: unsupported suffix {path.suffix or '(none)'!r}; use .gif or .mp4")


def observation_to_frame(observation: np.ndarray, env_kind: str) -> np.ndarray:
    """One env's observation as a viewable image at its native size.

    Args:
        observation: atari ``uint8 [frame_stack, H, W]``; maze ``uint8 [3, H, W]``
            (walls, agent, goal; 0 or 255).
        env_kind: ``"atari"`` or ``"maze"``.

    Returns:
        ``uint8 [H, W]`` greyscale (atari, the newest stacked frame) or ``uint8 [H, W, 3]``
        RGB (maze: walls blue, goal green, agent red, floor black).
    """
    if env_kind == "atari":
        return np.ascontiguousarray(observation[-1])
    if env_kind == "maze":
        walls, agent, goal = (observation[channel] > 0 for channel in range(3))
        image = np.zeros((*walls.shape, 3), np.uint8)
        image[walls] = MAZE_COLOURS["wall"]
        image[goal] = MAZE_COLOURS["goal"]
        image[agent] = MAZE_COLOURS["agent"]
        return image
    raise VideoError(f"no image rendering for env.kind {env_kind}")


def _enlarge(frame: np.ndarray) -> np.ndarray:
    """Nearest-neighbour enlargement of ``[H, W(, 3)]`` by a whole factor (≥ 1)."""
    factor = max(1, VIDEO_TARGET_SIDE // max(frame.shape[:2]))
    return frame.repeat(factor, axis=0).repeat(factor, axis=1)


class _EpisodeVideo:
    """Collects the native-size frames of one episode, then writes them as .gif or .mp4."""

    def __init__(self, path: Path, env_kind: str, max_frames: int):
        self.path = path
        self.env_kind = env_kind
        self.max_frames = max_frames
        self.frames: list[np.ndarray] = []
        self.recording = True
        self.cut_short = False

    def add(self, observation: np.ndarray) -> None:
        if not self.recording:
            return
        if len(self.frames) >= self.max_frames:
            self.cut_short, self.recording = True, False
            return
        self.frames.append(observation_to_frame(observation, self.env_kind))

    def write(self) -> int:
        """Write the file; returns the number of frames."""
        if not self.frames:
            raise VideoError(f"--video {self.path}: no frames were recorded")
        if self.cut_short:
            log.warning("video cut at %d frames (the first episode is longer)", self.max_frames)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fps = FRAMES_PER_SECOND[self.env_kind]
        if self.path.suffix.lower() == ".gif":
            self._write_gif(fps)
        else:
            self._write_mp4(fps)
        return len(self.frames)

    def _write_gif(self, fps: int) -> None:
        from PIL import Image

        images = [Image.fromarray(_enlarge(frame)) for frame in self.frames]
        images[0].save(
            self.path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=False
        )

    def _write_mp4(self, fps: int) -> None:
        import imageio

        # yuv420p (what players expect) needs even sides: pad the bottom and right edge.
        with imageio.get_writer(self.path, fps=fps, codec="libx264", macro_block_size=2) as writer:
            for frame in self.frames:
                frame = _enlarge(frame)
                if frame.ndim == 2:
                    frame = np.repeat(frame[:, :, None], 3, axis=2)
                pad_rows, pad_cols = frame.shape[0] % 2, frame.shape[1] % 2
                writer.append_data(np.pad(frame, ((0, pad_rows), (0, pad_cols), (0, 0))))


# --- play -------------------------------------------------------------------------------
def _episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """``[num_envs]`` episodes each env contributes, summing to ``episodes``."""
    quotas = np.full(num_envs, episodes // num_envs, np.int64)
    quotas[: episodes % num_envs] += 1
    return quotas


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    array = np.asarray(values, np.float64)
    return {"mean": float(array.mean()), "std": float(array.std()), "min": float(array.min()), "max": float(array.max())}


def _print_report(result: dict) -> None:
    mode = "greedy actions" if result["greedy"] else "sampled actions"
    print(
        f"checkpoint {result['checkpoint']}: env {result['env']}, {result['num_envs']} envs, "
        f"seed {result['seed']}, {mode}"
    )
    print(f"{'episode':>8} {'return':>10} {'length':>8}")
    for number, (episode_return, length) in enumerate(zip(result["returns"], result["lengths"]), start=1):
        print(f"{number:>8} {episode_return:>10.2f} {length:>8}")
    stats = result["return"]
    if stats["mean"] is None:
        print("no episode finished")
    else:
        print(
            f"return mean {stats['mean']:.2f} ± {stats['std']:.2f} (min {stats['min']:.2f}, max {stats['max']:.2f}); "
            f"length mean {result['length']['mean']:.1f} over {len(result['returns'])} episodes"
        )
    if not result["complete"]:
        print(f"stopped at max_steps={result['max_steps']} before {result['episodes_requested']} episodes finished")
    if result["video"]:
        print(f"video: {result['video']} ({result['video_frames']} frames)")


@dataclass
class _PlayOutcome:
    returns: list[float]
    lengths: list[int]
    vector_steps: int
    complete: bool


def _play(
    config: Config,
    agent_weights: dict[str, torch.Tensor],
    checkpoint: str | Path,
    *,
    seed: int,
    num_envs: int,
    episodes: int,
    greedy: bool,
    max_steps: int,
    recorder: _EpisodeVideo | None,
) -> _PlayOutcome:
    """Step ``num_envs`` envs until each has finished its quota of episodes (or ``max_steps``).

    Seeds and consumes the global torch RNG: the caller isolates it.
    """
    agent = build.agent_factory(config, build.probe_env(config))()
    try:
        agent.load_state_dict(agent_weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint {str(checkpoint)!r}: weights do not fit the agent its config builds: {error}"
        ) from None
    agent.eval()
    torch.manual_seed(seed)

    quotas = _episode_quotas(episodes, num_envs)
    finished = np.zeros(num_envs, np.int64)  # episodes ended per env, counted or not
    returns: list[float] = []
    lengths: list[int] = []
    vector_steps = 0
    stepper = EnvStepper(build.env_factory(config, seed=seed, num_envs=num_envs)(), agent, seed)
    caller_threads = torch.get_num_threads()
    try:
        # Play steps a handful of frames at a time, as an actor does: with more intra-op threads
        # than idle cores, each small convolution waits on its threads (25× slower on 2 busy cores).
        torch.set_num_threads(config.resources.actor_torch_threads)
        with torch.inference_mode():
            while vector_steps < max_steps and (finished < quotas).any():
                output, next_state = stepper.policy()
                if greedy:
                    actions = output.logits.argmax(dim=-1)
                else:
                    actions = torch.multinomial(torch.softmax(output.logits, dim=-1), 1).squeeze(1)
                actions = actions.numpy().astype(np.int64)
                if recorder:
                    recorder.add(stepper.observation[0])
                transition = stepper.advance(actions, next_state)
                vector_steps += 1
                for index, episode_return, episode_length in transition.finished:
                    if finished[index] < quotas[index]:
                        returns.append(episode_return)
                        lengths.append(episode_length)
                    finished[index] += 1
                if recorder and recorder.recording and transition.done[0]:
                    if "final_obs" in transition.info:  # the ended episode's last observation (maze and ale-py report it)
                        recorder.add(transition.info["final_obs"][0])
                    recorder.recording = False
    finally:
        stepper.close()
        torch.set_num_threads(caller_threads)
    return _PlayOutcome(returns, lengths, vector_steps, bool((finished >= quotas).all()))


def evaluate(
    checkpoint: str | Path,
    *,
    episodes: int = 10,
    video: str | Path | None = None,
    seed: int = 12345,
    greedy: bool = False,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES,
    verbose: bool = True,
    levels: list[int] | None = None,
    sequences: int = 64,
) -> dict[str, Any]:
    """Play ``episodes`` whole episodes with the checkpoint's agent and report their returns.

    A ``run.kind: memory_task`` checkpoint is evaluated on fresh sequences instead: at
    ``levels`` (default: its config's ``evaluate_levels``), ``sequences`` each, see
    :func:`engram.memory_task.evaluate_memory_task`.

    Args:
        checkpoint: a ``ckpt-*.pt`` written by ``engram train`` (a ``run.kind: rl`` run).
        episodes: episodes to count (≥ 1).
        video: ``.gif`` or ``.mp4`` path for the first episode; None for no video.
        seed: seeds the env resets and the action sampling (same seed → same episodes).
        greedy: take ``argmax(logits)`` instead of sampling from ``softmax(logits)``.
        max_steps: stop after this many vector-env steps even if episodes are unfinished.
        max_video_frames: longest video kept (longer first episodes are cut).
        verbose: print the per-episode table and the summary.

    Returns:
        A JSON-serialisable dict: ``returns`` and ``lengths`` (one entry per counted
        episode, in the order they finished), ``return`` and ``length`` (mean / std / min /
        max), ``complete`` (False if ``max_steps`` cut play short), and the settings used.

    Raises:
        CheckpointError: missing, unreadable or non-RL checkpoint, or weights that do not fit.
        ConfigError: the stored config no longer validates; :class:`VideoError` for a bad video.
    """
    config, payload = _load_payload(checkpoint)
    if config.run.kind == "memory_task":
        from engram.memory_task import evaluate_memory_task

        if video is not None:
            raise VideoError("--video: a memory_task checkpoint has no episodes to record")
        return evaluate_memory_task(config, payload, str(checkpoint), levels=levels, sequences=sequences,
                                    seed=seed, verbose=verbose)
    if config.run.kind == "density":
        from engram.density import evaluate_density

        if video is not None:
            raise VideoError("--video: a density checkpoint has no episodes to record")
        return evaluate_density(config, payload, str(checkpoint), verbose=verbose)
    if config.run.kind == "text":
        from engram.text_prediction import evaluate_text_checkpoint

        if video is not None:
            raise VideoError("--video: a text checkpoint has no episodes to record")
        return evaluate_text_checkpoint(config, payload, str(checkpoint), verbose=verbose)
    if levels is not None:
        raise ConfigError("--levels is for run.kind: memory_task checkpoints")
    if episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {episodes}")
    if max_steps < 1:
        raise ConfigError(f"max_steps must be at least 1, got {max_steps}")
    agent_weights = _policy_weights(config, payload, checkpoint)
    env_kind = config.env.kind
    recorder = None
    if video is not None:
        video = Path(video)
        _check_video_request(video, env_kind)
        recorder = _EpisodeVideo(video, env_kind, max_video_frames)

    num_envs = 1 if recorder else min(episodes, MAX_PARALLEL_ENVS)
    # Building the agent draws initial weights: keep that, and the seeded sampling, off the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        outcome = _play(
            config,
            agent_weights,
            checkpoint,
            seed=seed,
            num_envs=num_envs,
            episodes=episodes,
            greedy=greedy,
            max_steps=max_steps,
            recorder=recorder,
        )
    returns, lengths, complete = outcome.returns, outcome.lengths, outcome.complete
    if not complete:
        log.warning("max_steps=%d reached with %d of %d episodes finished", max_steps, len(returns), episodes)
    video_frames = recorder.write() if recorder else 0
    result = {
        "checkpoint": str(checkpoint),
        "env": env_kind,
        "seed": seed,
        "greedy": greedy,
        "num_envs": num_envs,
        "episodes_requested": episodes,
        "complete": complete,
        "max_steps": max_steps,
        "env_steps": outcome.vector_steps * num_envs,
        "returns": returns,
        "lengths": lengths,
        "return": _summary(returns),
        "length": _summary([float(length) for length in lengths]),
        "video": str(video) if recorder else None,
        "video_frames": video_frames,
    }
    if verbose:
        _print_report(result)
    return result
