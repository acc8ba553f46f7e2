"""benchmarks.answer_probe: the share right at each scored step, checked by hand."""

import numpy as np

from benchmarks.answer_probe import mean_read_modes, share_right_by_step


def test_share_right_is_counted_on_the_scored_steps_only():
    n = 1 / 3  # three answers an episode, ±1/3 each
    rewards = np.array([
        [0, 0, 0, 0],      # watching: nothing paid
        [0, 0, n, 0],      # one stray payment is not a scored step
        [n, n, n, -n],     # 3 of 4 right
        [n, -n, -n, -n],   # 1 of 4
        [-n, -n, -n, -n],  # none
    ])
    steps, share = share_right_by_step(rewards)
    assert steps == [2, 3, 4]
    assert share == [0.75, 0.25, 0.0]


def test_read_modes_are_averaged_over_the_scored_steps_and_episodes_only():
    modes = np.zeros((3, 2, 1, 3))
    modes[0] = [1.0, 0.0, 0.0]  # an unscored step: left out
    modes[1, 0], modes[1, 1] = [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    modes[2, 0], modes[2, 1] = [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]
    np.testing.assert_allclose(mean_read_modes(modes, [1, 2]), [[0.0, 0.75, 0.25]])
