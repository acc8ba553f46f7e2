"""Tests of the 2-D maze environments (envs/maze.py)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from envs.maze import AGENT, GOAL, MOVES, WALL, MazeEnv, MazeVectorEnv, generate_mazes, open_walls


def shortest_path(walls, start, goal):
    """BFS over free pixels; returns the list of actions from ``start`` to ``goal`` or None."""
    start, goal = tuple(int(x) for x in start), tuple(int(x) for x in goal)
    previous = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            actions = []
            while previous[here] is not None:
                here, action = previous[here]
                actions.append(action)
            return actions[::-1]
        for action, (dr, dc) in enumerate(MOVES):
            there = (here[0] + dr, here[1] + dc)
            if not walls[there] and there not in previous:
                previous[there] = (here, action)
                queue.append(there)
    return None


def reachable(walls, start):
    seen = {tuple(start)}
    queue = deque([tuple(start)])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            there = (r + dr, c + dc)
            if not walls[there] and there not in seen:
                seen.add(there)
                queue.append(there)
    return seen


# ----------------------------------------------------------------------- generation


@pytest.mark.parametrize("size", [5, 11, 15])
def test_generated_mazes_are_perfect(size):
    mazes = generate_mazes(40, size, np.random.default_rng(0))
    cells = ((size - 1) // 2) ** 2
    for walls in mazes:
        assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
        free = list(zip(*np.nonzero(~walls)))
        # A spanning tree of the cells: n² cells plus n² − 1 carved passages, all connected.
        assert len(free) == 2 * cells - 1
        assert len(reachable(walls, free[0])) == len(free)
    distinct = len({walls.tobytes() for walls in mazes})
    assert distinct == 4 if size == 5 else distinct > 30  # a 2×2-cell grid has 4 spanning trees


@pytest.mark.parametrize("size", [7, 11])
def test_opening_walls_adds_loops_and_keeps_border_posts_and_connection(size):
    perfect = generate_mazes(20, size, np.random.default_rng(1))
    cells = ((size - 1) // 2) ** 2
    posts = ((size - 3) // 2) ** 2
    room = open_walls(perfect.copy(), 1.0, np.random.default_rng(2))
    # Fully open: every interior pixel is free except the posts at two even coordinates.
    assert (room.sum(axis=(1, 2)) == size * size - (size - 2) ** 2 + posts).all()
    assert room[:, 2:-1:2, 2:-1:2].all()
    half = open_walls(perfect.copy(), 0.5, np.random.default_rng(2))
    for before, after in zip(perfect, half):
        assert after[0].all() and after[-1].all() and after[:, 0].all() and after[:, -1].all()
        assert not (after & ~before).any()  # walls are only removed
        free = list(zip(*np.nonzero(~after)))
        assert len(reachable(after, free[0])) == len(free)
    loops = (~half).sum(axis=(1, 2)) - (2 * cells - 1)  # passages beyond a spanning tree
    assert loops.min() >= 0 and loops.mean() > 0.25 * (cells - 1)
    assert np.array_equal(open_walls(perfect.copy(), 0.0, np.random.default_rng(2)), perfect)


def test_open_maze_env_is_an_open_room_and_the_default_is_unchanged():
    room = MazeVectorEnv(2, size=9, seed=0, pool_size=8, openness=1.0)
    room.reset(seed=0)
    assert room.walls(0).sum() == 9 * 9 - 7 * 7 + 9
    perfect, default = MazeVectorEnv(2, seed=4, pool_size=8, openness=0.0), MazeVectorEnv(2, seed=4, pool_size=8)
    perfect.reset(seed=4), default.reset(seed=4)
    assert np.array_equal(perfect.walls(1), default.walls(1))
    with pytest.raises(ValueError, match="openness"):
        MazeVectorEnv(2, openness=1.5)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="odd"):
        MazeVectorEnv(2, size=10)
    with pytest.raises(ValueError, match="view_size"):
        MazeVectorEnv(2, view_size=4)


# --------------------------------------------------------------------- single env


@pytest.mark.filterwarnings("ignore:.*not having a spec")
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"view_size": 5}, {"pixel_scale": 3, "size": 7}, {"step_cost": 0.01, "max_steps": 20}, {"openness": 0.5}],
)
def test_single_env_passes_gymnasium_checker(kwargs):
    env = MazeEnv(pool_size=16, **kwargs)
    check_env(env, skip_render_check=False)
    env.close()


def test_single_env_render_and_episode_end():
    env = MazeEnv(render_mode="rgb_array", size=7, pool_size=8)
    observation, _ = env.reset(seed=3)
    image = env.render()
    assert image.shape == (7, 7, 3) and image.dtype == np.uint8
    walls = observation[WALL] > 0
    start = np.argwhere(observation[AGENT])[0]
    goal = np.argwhere(observation[GOAL])[0]
    actions = shortest_path(walls, start, goal)
    for action in actions[:-1]:
        _, reward, terminated, truncated, _ = env.step(action)
        assert (reward, terminated, truncated) == (0.0, False, False)
    observation, reward, terminated, truncated, _ = env.step(actions[-1])
    assert (reward, terminated, truncated) == (1.0, True, False)
    # Single-env semantics: the ended episode's last frame, agent on the goal.
    assert np.array_equal(np.argwhere(observation[AGENT])[0], goal)


# --------------------------------------------------------------------- vector env


def test_vector_env_declares_same_step_autoreset():
    env = MazeVectorEnv(3, seed=0)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    observations, info = env.reset(seed=1)
    assert observations.shape == (3, 3, 11, 11) and observations.dtype == np.uint8
    assert env.observation_space.contains(observations)
    assert info == {}


def test_reaching_the_goal_rewards_and_starts_the_next_episode_in_the_same_step():
    env = MazeVectorEnv(4, size=11, seed=0, pool_size=8)
    observations, _ = env.reset(seed=5)
    positions, goals = env.positions()
    assert not (positions == goals).all(axis=1).any()  # start ≠ goal
    paths = [shortest_path(env.walls(i), positions[i], goals[i]) for i in range(4)]
    assert all(path for path in paths)  # the goal is reachable from the start
    # Env 0 walks its shortest path; the others bump into walls where they can.
    target = 0
    for step, action in enumerate(paths[target]):
        actions = np.zeros(4, dtype=np.int64)
        actions[target] = action
        walls_before = [env.walls(i) for i in range(4)]
        observations, rewards, terminated, truncated, info = env.step(actions)
        last = step == len(paths[target]) - 1
        assert terminated[target] == last and not truncated.any()
        assert rewards[target] == (1.0 if last else 0.0)
    assert "final_obs" in info and info["_final_obs"][target]
    final = info["final_obs"][target]
    assert np.array_equal(np.argwhere(final[AGENT])[0], goals[target])
    assert np.array_equal(final[WALL] > 0, walls_before[target])
    assert info["final_info"]["episode_return"][target] == 1.0
    assert info["final_info"]["episode_length"][target] == len(paths[target])
    assert info["final_info"]["success"][target]
    assert not info["_final_info"][1:].any()
    # The returned observation is already the next episode's first frame.
    new_positions, new_goals = env.positions()
    assert np.array_equal(np.argwhere(observations[target, AGENT])[0], new_positions[target])
    assert np.array_equal(np.argwhere(observations[target, GOAL])[0], new_goals[target])
    assert np.array_equal(observations[target, WALL] > 0, env.walls(target))
    assert not np.array_equal(new_positions[target], goals[target])  # not left on the old goal
    assert not np.array_equal(new_positions[target], new_goals[target])
    assert shortest_path(env.walls(target), new_positions[target], new_goals[target])
    # The other envs keep their episodes.
    assert np.array_equal(new_goals[1:], goals[1:])


def test_walls_block_moves():
    env = MazeVectorEnv(16, size=11, seed=0)
    env.reset(seed=0)
    positions, _ = env.positions()
    for action in range(4):
        before, goals = env.positions()
        env.step(np.full(16, action))
        after, _ = env.positions()
        target = before + MOVES[action]
        blocked = np.array([env.walls(i)[tuple(target[i])] for i in range(16)])
        moved = ~blocked & ~(target == goals).all(axis=1)
        assert np.array_equal(after[blocked], before[blocked])
        assert np.array_equal(after[moved], target[moved])


def test_truncation_at_max_steps():
    env = MazeVectorEnv(32, size=15, max_steps=3, seed=0)
    env.reset(seed=0)
    for step in range(3):
        _, _, terminated, truncated, info = env.step(np.zeros(32, dtype=np.int64))
    assert (terminated | truncated).all()
    assert truncated.any()
    assert (info["final_info"]["episode_length"] == 3).all()
    assert (info["final_info"]["success"] == terminated).all()
    _, _, terminated, truncated, _ = env.step(np.zeros(32, dtype=np.int64))
    assert not truncated.any()  # step counters were reset


def test_same_seed_same_episodes():
    def trajectory(seed):
        env = MazeVectorEnv(8, size=9, seed=seed, pool_size=8)
        frames = [env.reset(seed=seed)[0]]
        actions = np.random.default_rng(0).integers(4, size=(60, 8))
        for action in actions:
            frames.append(env.step(action)[0])
        return np.stack(frames)

    assert np.array_equal(trajectory(1), trajectory(1))
    assert not np.array_equal(trajectory(1), trajectory(2))


def test_pool_refresh_never_changes_a_running_maze():
    # A tiny pool refreshes a quarter every episode, while long episodes keep running.
    env = MazeVectorEnv(16, size=7, max_steps=50, seed=0, pool_size=4)
    observations, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    starts_seen = 0
    for _ in range(300):
        walls_before = observations[:, WALL].copy()
        observations, _, terminated, truncated, _ = env.step(rng.integers(4, size=16))
        running = ~(terminated | truncated)
        starts_seen += (~running).sum()
        assert np.array_equal(observations[running, WALL], walls_before[running])
        assert (observations[:, AGENT].reshape(16, -1).sum(axis=1) == 255).all()
    assert starts_seen > 20


def test_egocentric_view_is_a_window_on_the_maze():
    env = MazeVectorEnv(6, size=11, seed=0, view_size=5)
    observations, _ = env.reset(seed=4)
    positions, goals = env.positions()
    for i in range(6):
        padded = np.pad(env.walls(i), 2, constant_values=True)
        r, c = positions[i]
        assert np.array_equal(observations[i, WALL] > 0, padded[r : r + 5, c : c + 5])
        assert observations[i, AGENT, 2, 2] == 255 and observations[i, AGENT].sum() == 255
        relative = goals[i] - positions[i] + 2
        visible = ((relative >= 0) & (relative < 5)).all()
        assert observations[i, GOAL].sum() == (255 if visible else 0)
