"""Procedurally generated 2-D grid mazes, vectorised in numpy.

The 2-D maze navigation task of STRAW (Vezhnevets et al. 2016, Fig. 1): a random maze,
a random start and a random goal per episode; the frame shows the maze geometry, the agent
and the goal. The paper's exact maze sizes and view could not be checked here, so both are
options.

Layout. A maze of ``size`` × ``size`` pixels (``size`` odd, ≥ 5) has n × n cells,
n = (size − 1) / 2, at the odd coordinates; the border and the pixels between cells are
walls unless carved. Mazes are *perfect* (a spanning tree of the cells, built by a randomised
depth-first search run on all mazes of a batch at once), so every free pixel reaches every
other: the goal is always reachable. Start and goal are two distinct random cells.

Observation. ``uint8`` ``[3, H, W]``, values 0 or 255, channels (walls, agent, goal):

* ``view_size=None`` (default): the whole maze, H = W = size · ``pixel_scale``;
* ``view_size=V`` (odd): an egocentric V × V window centred on the agent (partial
  observability: a memory task); pixels outside the maze read as wall, the goal channel is
  set only when the goal is inside the window. H = W = V · ``pixel_scale``.

``pixel_scale`` repeats each pixel (the A3C shallow torso needs frames of about 36 pixels
or more; the IMPALA deep torso works on the raw grid).

Actions. ``Discrete(4)``: 0 = north (up), 1 = east, 2 = south, 3 = west. A move into a wall
leaves the agent where it is.

Reward. +1 on the step that reaches the goal (the episode then terminates), otherwise
``-step_cost`` (default 0). Episodes are truncated after ``max_steps`` steps (default
4 · size²).

Autoreset. :class:`MazeVectorEnv` uses gymnasium's ``AutoresetMode.SAME_STEP``: the step
that ends an episode returns the first observation of the next one; the last observation of
the ended episode is in ``info["final_obs"]`` and its statistics in ``info["final_info"]``
(``episode_return``, ``episode_length``, ``success``), each with the usual ``_name`` mask.

Openness. ``openness`` (default 0) removes each wall left between two adjacent cells of the
perfect maze with that probability, adding loops; at 1 the maze is an open room broken only
by one-pixel posts at the even coordinates, where long straight runs are possible. The
harder exploration setting of issue 23: a committed macro-action can cross such a room where
one-step dithering wanders.

Maze pool. Generating a maze costs one vectorised DFS (2n² − 1 numpy iterations), too much
to run on every reset. Episodes draw their maze at random from a pool of ``pool_size``
mazes; each time ``pool_size // 4`` episodes have begun, the oldest quarter of the pool is
replaced by fresh mazes, so the mazes never stop changing (an agent cannot memorise them)
and generation costs a few milliseconds per ``pool_size // 4`` episodes. Each env copies its
maze when its episode begins, so a refresh never changes a maze under a running episode.

Speed (idle 2-core CPU, 64 envs, random actions): about 1.7M steps/s at size 11, 1M with a 5 × 5
egocentric view, 0.24M with ``pixel_scale=4``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

WALL, AGENT, GOAL = 0, 1, 2
"""Observation channels."""

MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=np.int64)
"""(row, column) displacement of actions north, east, south, west."""
MOVE_NAMES = ("north", "east", "south", "west")

_ON = np.uint8(255)


def generate_mazes(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Perfect mazes by randomised depth-first search, run on ``count`` mazes at once.

    Every maze pushes one cell or pops one per iteration, and each maze pushes n² − 1 cells
    and pops n², so all finish after exactly 2n² − 1 iterations.

    Args:
        count: number of mazes.
        size: odd side in pixels (≥ 5); the mazes have ((size − 1) / 2)² cells.
        rng: the random generator.

    Returns:
        ``[count, size, size]`` bool, True where there is a wall.
    """
    _check_size(size)
    cells_per_side = (size - 1) // 2
    num_cells = cells_per_side * cells_per_side
    walls = np.ones((count, size, size), dtype=bool)
    walls[:, 1::2, 1::2] = False  # cell centres
    rows = np.arange(count)
    visited = np.zeros((count, num_cells), dtype=bool)
    stack = np.zeros((count, num_cells), dtype=np.int64)
    depth = np.ones(count, dtype=np.int64)
    start = rng.integers(num_cells, size=count)
    stack[:, 0] = start
    visited[rows, start] = True
    for _ in range(2 * num_cells - 1):
        current = stack[rows, depth - 1]
        cell_row, cell_col = np.divmod(current, cells_per_side)
        next_row = cell_row[:, None] + MOVES[None, :, 0]  # [count, 4]
        next_col = cell_col[:, None] + MOVES[None, :, 1]
        inside = (next_row >= 0) & (next_row < cells_per_side)
        inside &= (next_col >= 0) & (next_col < cells_per_side)
        neighbour = np.where(inside, next_row * cells_per_side + next_col, 0)
        open_moves = inside & ~visited[rows[:, None], neighbour]
        keys = np.where(open_moves, rng.random((count, 4)), -1.0)
        move = keys.argmax(axis=1)
        push = open_moves[rows, move]
        # Push: carve the wall between the current cell and the chosen neighbour.
        pushed = rows[push]
        chosen = neighbour[pushed, move[push]]
        walls[
            pushed,
            2 * cell_row[push] + 1 + MOVES[move[push], 0],
            2 * cell_col[push] + 1 + MOVES[move[push], 1],
        ] = False
        visited[pushed, chosen] = True
        stack[pushed, depth[push]] = chosen
        depth = np.where(push, depth + 1, depth - 1)
    return walls


def open_walls(walls: np.ndarray, openness: float, rng: np.random.Generator) -> np.ndarray:
    """Remove each wall between two adjacent cells with probability ``openness``, in place.

    Those walls sit at one odd and one even coordinate inside the border; the border and the
    posts at two even coordinates stay, so every maze keeps its cells and stays connected.

    Args:
        walls: ``[count, size, size]`` bool mazes from :func:`generate_mazes`.
        openness: probability in [0, 1] of removing each such wall.
        rng: the random generator.

    Returns:
        ``walls``, with the chosen walls removed.
    """
    if not 0.0 <= openness <= 1.0:
        raise ValueError(f"openness must be in [0, 1], got {openness}")
    if openness == 0.0:
        return walls
    size = walls.shape[-1]
    between_cells = np.zeros((size, size), dtype=bool)
    between_cells[1:-1:2, 2:-1:2] = True  # between horizontal neighbours
    between_cells[2:-1:2, 1:-1:2] = True  # between vertical neighbours
    chosen = between_cells & (rng.random(walls.shape) < openness)
    walls[chosen] = False
    return walls


def _check_size(size: int) -> None:
    if size < 5 or size % 2 == 0:
        raise ValueError(f"maze size must be odd and at least 5, got {size}")


class MazeVectorEnv(VectorEnv):
    """``num_envs`` mazes stepped together, autoreset ``SAME_STEP``.

    Args:
        num_envs: number of parallel mazes.
        size: odd side of a maze in pixels (≥ 5).
        max_steps: truncation limit per episode (default 4 · size²).
        seed: seed of the generator behind mazes, starts and goals.
        view_size: None for the full maze, or an odd window side for an egocentric view.
        pixel_scale: each maze pixel becomes ``pixel_scale`` × ``pixel_scale`` pixels.
        step_cost: subtracted from the reward on every step that does not reach the goal.
        pool_size: number of mazes in the pool (≥ 4); a quarter is replaced every
            ``pool_size // 4`` episodes.
        openness: probability of removing each wall left between adjacent cells (0: a
            perfect maze; 1: an open room with posts).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int,
        size: int = 11,
        max_steps: int | None = None,
        seed: int | None = None,
        *,
        view_size: int | None = None,
        pixel_scale: int = 1,
        step_cost: float = 0.0,
        pool_size: int = 1024,
        openness: float = 0.0,
    ):
        _check_size(size)
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if view_size is not None and (view_size < 1 or view_size % 2 == 0):
            raise ValueError(f"view_size must be None or an odd positive int, got {view_size}")
        if pixel_scale < 1:
            raise ValueError(f"pixel_scale must be at least 1, got {pixel_scale}")
        if pool_size < 4:
            raise ValueError(f"pool_size must be at least 4, got {pool_size}")
        self.num_envs = num_envs
        self.size = size
        self.max_steps = 4 * size * size if max_steps is None else int(max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.view_size = view_size
        self.pixel_scale = pixel_scale
        self.step_cost = float(step_cost)
        self.pool_size = pool_size
        self.openness = float(openness)
        self._refresh_chunk = pool_size // 4

        side = (size if view_size is None else view_size) * pixel_scale
        self.single_observation_space = spaces.Box(0, 255, (3, side, side), dtype=np.uint8)
        self.single_action_space = spaces.Discrete(4)
        self.observation_space = spaces.Box(0, 255, (num_envs, 3, side, side), dtype=np.uint8)
        self.action_space = spaces.MultiDiscrete(np.full(num_envs, 4))

        self._rows = np.arange(num_envs)
        self._position = np.zeros((num_envs, 2), dtype=np.int64)
        self._goal = np.zeros((num_envs, 2), dtype=np.int64)
        self._maze = np.zeros(num_envs, dtype=np.int64)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._seed_everything(seed)

    # ----------------------------------------------------------------- gymnasium API

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode in every env; ``seed`` (an int) reseeds mazes and placement."""
        if isinstance(seed, (list, tuple)):
            seed = seed[0]
        if seed is not None:
            self._seed_everything(seed)
        self._begin_episodes(np.ones(self.num_envs, dtype=bool))
        return self._observe(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Move every agent; ended episodes are replaced in the same step (SAME_STEP)."""
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        if actions.min() < 0 or actions.max() > 3:
            raise ValueError(f"actions must be in {{0, 1, 2, 3}}, got {actions}")
        target = self._position + MOVES[actions]
        pad = self._pad
        blocked = self._walls[self._rows, target[:, 0] + pad, target[:, 1] + pad]
        self._position = np.where(blocked[:, None], self._position, target)
        terminated = (self._position == self._goal).all(axis=1)
        rewards = np.where(terminated, 1.0, -self.step_cost)
        self._steps += 1
        self._returns += rewards
        truncated = (self._steps >= self.max_steps) & ~terminated
        ended = terminated | truncated
        info: dict[str, Any] = {}
        if ended.any():
            final_obs = self._observe()
            info["final_obs"] = final_obs
            info["_final_obs"] = ended.copy()
            info["final_info"] = {
                "episode_return": np.where(ended, self._returns, 0.0),
                "_episode_return": ended.copy(),
                "episode_length": np.where(ended, self._steps, 0),
                "_episode_length": ended.copy(),
                "success": terminated.copy(),
                "_success": ended.copy(),
            }
            info["_final_info"] = ended.copy()
            self._begin_episodes(ended)
        return self._observe(), rewards, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        pass

    # ------------------------------------------------------------------- internals

    def _seed_everything(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)
        self._pool = self._generate(self.pool_size)
        self._next_refresh = 0  # index of the oldest quarter of the pool
        self._episodes_since_refresh = 0
        # Each env keeps its own copy of its maze (padded with walls for the egocentric
        # window), so refreshing the pool never changes a maze under a running episode.
        self._pad = 0 if self.view_size is None else self.view_size // 2
        side = self.size + 2 * self._pad
        self._walls = np.ones((self.num_envs, side, side), dtype=bool)

    def _generate(self, count: int) -> np.ndarray:
        return open_walls(generate_mazes(count, self.size, self._rng), self.openness, self._rng)

    def _refresh_pool(self) -> None:
        start, stop = self._next_refresh, self._next_refresh + self._refresh_chunk
        self._pool[start:stop] = self._generate(stop - start)
        self._next_refresh = stop % (4 * self._refresh_chunk)

    def _begin_episodes(self, which: np.ndarray) -> None:
        """Draw a maze, a start and a distinct goal for the envs where ``which`` is set."""
        count = int(which.sum())
        self._episodes_since_refresh += count
        if self._episodes_since_refresh >= self._refresh_chunk:
            self._episodes_since_refresh = 0
            self._refresh_pool()
        cells_per_side = (self.size - 1) // 2
        num_cells = cells_per_side * cells_per_side
        start = self._rng.integers(num_cells, size=count)
        goal = (start + self._rng.integers(1, num_cells, size=count)) % num_cells  # ≠ start
        self._maze[which] = self._rng.integers(self.pool_size, size=count)
        pad, size = self._pad, self.size
        self._walls[which, pad : pad + size, pad : pad + size] = self._pool[self._maze[which]]
        self._position[which] = 2 * np.stack(np.divmod(start, cells_per_side), axis=1) + 1
        self._goal[which] = 2 * np.stack(np.divmod(goal, cells_per_side), axis=1) + 1
        self._steps[which] = 0
        self._returns[which] = 0.0

    def _observe(self) -> np.ndarray:
        """Render ``[num_envs, 3, H, W]`` uint8 frames of the current positions."""
        rows = self._rows
        if self.view_size is None:
            frames = np.zeros((self.num_envs, 3, self.size, self.size), dtype=np.uint8)
            frames[:, WALL] = self._walls * _ON
            frames[rows, AGENT, self._position[:, 0], self._position[:, 1]] = _ON
            frames[rows, GOAL, self._goal[:, 0], self._goal[:, 1]] = _ON
        else:
            view, pad = self.view_size, self._pad
            frames = np.zeros((self.num_envs, 3, view, view), dtype=np.uint8)
            window = np.arange(view)
            # Padded coordinates of the window's top-left corner equal the agent's position.
            window_rows = self._position[:, 0:1] + window[None, :]
            window_cols = self._position[:, 1:2] + window[None, :]
            window_walls = self._walls[
                rows[:, None, None], window_rows[:, :, None], window_cols[:, None, :]
            ]
            frames[:, WALL] = window_walls * _ON
            frames[:, AGENT, pad, pad] = _ON
            relative = self._goal - self._position + pad
            visible = ((relative >= 0) & (relative < view)).all(axis=1)
            frames[rows[visible], GOAL, relative[visible, 0], relative[visible, 1]] = _ON
        if self.pixel_scale > 1:
            frames = frames.repeat(self.pixel_scale, axis=2).repeat(self.pixel_scale, axis=3)
        return frames

    # ------------------------------------------------------------ for tests / tools

    def walls(self, index: int) -> np.ndarray:
        """``[size, size]`` bool wall map of env ``index``'s current maze."""
        pad, size = self._pad, self.size
        return self._walls[index, pad : pad + size, pad : pad + size].copy()

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(agent, goal) positions, each ``[num_envs, 2]`` (row, column) in maze pixels."""
        return self._position.copy(), self._goal.copy()


class MazeEnv(gymnasium.Env):
    """One maze as a ``gymnasium.Env``: a :class:`MazeVectorEnv` with ``num_envs=1``.

    The episode-ending step returns the ended episode's last observation (standard
    single-env semantics); call :meth:`reset` to begin the next episode. Keyword arguments
    are those of :class:`MazeVectorEnv`. ``render_mode="rgb_array"`` renders the whole maze
    (walls blue, agent red, goal green), one pixel per maze pixel.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._vector = MazeVectorEnv(1, **kwargs)
        self.observation_space = self._vector.single_observation_space
        self.action_space = self._vector.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        frames, _ = self._vector.reset(seed=seed)
        return frames[0], {}

    def step(self, action):
        frames, rewards, terminated, truncated, info = self._vector.step(np.array([action]))
        observation = info["final_obs"][0] if "final_obs" in info else frames[0]
        return observation, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        walls = self._vector.walls(0)
        agent, goal = self._vector.positions()
        image = np.zeros((*walls.shape, 3), dtype=np.uint8)
        image[walls] = (40, 60, 200)
        image[agent[0, 0], agent[0, 1]] = (220, 30, 30)
        image[goal[0, 0], goal[0, 1]] = (30, 200, 30)
        return image
