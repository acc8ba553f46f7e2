"""Many nodes, and losing one: a real multi-node Ray cluster on this machine (ray.cluster_utils)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def _scenario(name: str, run_dir) -> dict:
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "scripts" / "multinode_run.py"), name, str(run_dir)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (result.stdout[-3000:], result.stderr[-5000:])
    seen = json.loads(lines[-1][len("RESULT "):])
    assert "error" not in seen, seen
    return seen


@pytest.mark.e2e
def test_actors_spread_over_the_nodes_and_a_lost_node_is_survived_and_counted(tmp_path):
    seen = _scenario("actor", tmp_path / "run")
    # one actor on each worker node (each offers one CPU; the head offers none)
    assert seen["nodes_before"] == seen["worker_nodes"]
    assert seen["exit_status"] == 0
    # the run went on past the loss, replaced the lost actor, counted the node, trained with the
    # node that joined, and stopped cleanly on Ctrl-C
    progress = seen["progress"]
    assert progress["env_steps"] >= seen["steps_at_join"] + 20_000
    assert seen["steps_at_join"] >= seen["steps_at_loss"]
    assert progress["actor_restarts"] >= 1
    assert progress["nodes_lost"] == 1
    # one CPU is left for two one-CPU actors: the replacement waits for room, and goes to the
    # node that joined later
    assert seen["placed_while_short"] == 1 and seen["joined_node_has_an_actor"]


@pytest.mark.e2e
def test_losing_the_learners_node_stops_the_run_with_the_cause_and_resume_continues_it(tmp_path):
    seen = _scenario("learner", tmp_path / "run")
    assert seen["exit_status"] == 4
    assert "learner" in seen["message"] and "--resume" in seen["message"]
    assert seen["resume_status"] == 0
    assert seen["resumed_steps"] >= seen["saved_steps"] + 3000
