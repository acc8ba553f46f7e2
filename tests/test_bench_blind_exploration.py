"""Tests of the blind-exploration count (benchmarks/blind_exploration.py)."""

from __future__ import annotations

import json

from benchmarks import blind_exploration


def test_the_share_counts_goals_reached_before_the_step_limit():
    # Start and goal are distinct cells, two pixels apart at least: one step never reaches the goal,
    # and in a 2 × 2-cell room a walk of 400 steps always does.
    never, counted = blind_exploration.success_share(5, 1.0, 1, 1.0, envs=16, episodes=64)
    always, _ = blind_exploration.success_share(5, 1.0, 400, 2.0, envs=16, episodes=64)
    assert (never, always) == (0.0, 1.0) and counted >= 64


def test_the_command_prints_and_writes_one_row_per_layout(tmp_path, capsys):
    path = tmp_path / "blind.json"
    assert blind_exploration.main(["--layouts", "7:0:20,7:1:20", "--lengths", "1,3", "--envs", "32",
                                   "--episodes", "100", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(row["openness"], sorted(row["success"])) for row in rows] == [(0.0, ["1", "3"]), (1.0, ["1", "3"])]
    assert all(0.0 <= share <= 1.0 for row in rows for share in row["success"].values())
    assert "L=3" in capsys.readouterr().out
