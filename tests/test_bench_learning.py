"""engram bench learning: curves, scoring at equal frames, and resuming an interrupted sweep."""

import json
import subprocess
import sys

import pytest

from bench_fakes import run_failing_seed_zero
from benchmarks import learning
from benchmarks.learning import Curve, RunSpec, engram_curve, engram_status, score


def _curve(label, seed, frames, returns, game="pong"):
    return Curve(RunSpec(label, game, seed, frames[-1]), list(frames), list(returns))


def test_a_curve_is_read_as_a_step_function_and_is_undefined_past_its_ends():
    curve = _curve("a", 0, [100, 200, 400], [1.0, 2.0, 4.0])
    assert [curve.at(f) for f in (99, 100, 150, 200, 399, 400, 401)] == [None, 1.0, 1.0, 2.0, 2.0, 4.0, None]


def test_at_its_budget_a_run_is_worth_its_final_point_even_one_batch_past_it():
    curve = Curve(RunSpec("a", None, 0, 400), [100, 200, 390, 410], [1.0, 2.0, 3.0, 4.0])
    assert [curve.at(f) for f in (399, 400, 405, 410, 411)] == [3.0, 4.0, 3.0, 4.0, None]
    short = Curve(RunSpec("a", None, 0, 400), [100, 390], [1.0, 3.0])  # stopped before its budget
    assert short.at(400) is None


def test_scores_are_compared_at_equal_frames_across_seeds_and_labels():
    curves = [
        _curve("engram", 0, [100, 200], [1.0, 3.0]),
        _curve("engram", 1, [150, 250], [2.0, 5.0]),
        _curve("rllib", 0, [100, 300], [0.0, 1.0]),
    ]
    rows = {row["label"]: row for row in score(curves, [200, 250])}
    engram_200 = rows["engram"]["at"]["200"]
    assert engram_200["values"] == [3.0, 2.0] and engram_200["mean"] == 2.5
    assert engram_200["std"] == pytest.approx(0.5 ** 0.5)  # the sample deviation (ddof 1)
    assert rows["engram"]["at"]["250"]["values"] == [5.0]  # seed 0 ends at 200 frames: it does not count
    assert rows["rllib"]["at"]["250"]["values"] == [0.0]
    table = learning.format_table(list(rows.values()), [200, 250])
    assert "2.50 ± 0.71 (2)" in table


def test_metrics_of_a_resumed_run_keep_the_second_telling_of_a_repeated_stretch(tmp_path):
    spec = RunSpec("smoke", None, 0, 1000, config="configs/smoke.yaml")
    folder = spec.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("env: {kind: memory_cue}\n")
    records = [(100, 0.1), (200, 0.2), (300, 0.3), (200, 0.25), (300, 0.35), (400, 0.4)]
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "episode/return_mean100": r}) + "\n" for s, r in records)
        + json.dumps({"step": 450}) + "\n"  # a record before any episode ended has no return
    )
    curve = engram_curve(spec, tmp_path)
    assert curve.frames == [100, 200, 300, 400] and curve.returns == [0.1, 0.25, 0.35, 0.4]
    assert curve.resumed_at == []


def test_a_resume_is_marked_and_what_the_first_telling_logged_past_it_is_dropped(tmp_path):
    spec = RunSpec("smoke", None, 0, 1000, config="configs/smoke.yaml")
    folder = spec.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("env: {kind: memory_cue}\n")
    lines = [{"step": s, "episode/return_mean100": r} for s, r in [(100, 0.1), (200, 0.2), (300, 0.3)]]
    lines += [{"step": 150, "run/resumed": 1.0}]  # the checkpoint the second telling starts from
    lines += [{"step": s, "episode/return_mean100": r} for s, r in [(250, 0.25), (350, 0.35)]]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curve = engram_curve(spec, tmp_path)
    assert curve.frames == [100, 250, 350] and curve.returns == [0.1, 0.25, 0.35]
    assert curve.resumed_at == [150]


def test_an_rllib_curve_marks_where_it_resumed(tmp_path):
    spec = RunSpec(learning.RLLIB, "pong", 0, 1000)
    spec.folder(tmp_path).mkdir(parents=True)
    lines = [{"frames": 100, "return_mean100": None}, {"frames": 200, "return_mean100": -20.0},
             {"frames": 200, "resumed": True}, {"frames": 300, "return_mean100": -19.0}]
    (spec.folder(tmp_path) / "curve.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curve = learning.rllib_curve(spec, tmp_path)
    assert curve.frames == [200, 300] and curve.returns == [-20.0, -19.0] and curve.resumed_at == [200]


@pytest.mark.e2e
def test_an_interrupted_sweep_resumes_and_keeps_what_finished(tmp_path):
    out = tmp_path / "sweep"
    frames = 2560  # smoke: 1 frame per step, 640 steps per update
    specs = learning.sweep_specs(["configs/smoke.yaml"], None, [0, 1], frames, ["checkpoint.interval_s=0.5"], False)
    assert [s.seed for s in specs] == [0, 1] and all(s.game is None for s in specs)
    finished, interrupted = specs

    learning.run_engram(finished, out)
    finished_metrics = (finished.folder(out) / "metrics.jsonl").read_text()
    # An interruption, as a sweep killed mid-run leaves it: a checkpoint short of the budget.
    folder = interrupted.folder(out)
    subprocess.run(
        [sys.executable, "-m", "engram.cli", "train", "configs/smoke.yaml", "--run-dir", str(folder),
         *[a for o in learning.engram_overrides(interrupted, 1) for a in ("--set", o)],
         "--set", "run.total_steps=1200", "--set", "checkpoint.interval_s=0.5"],
        check=True, capture_output=True,
    )
    assert engram_status(folder, frames) == "partial"

    result = learning.run_sweep(specs, out, [1280, 2560])
    assert [run["did"] for run in result["runs"]] == ["done", "resumed"]
    assert result["curves"][0]["resumed_at"] == [] and len(result["curves"][1]["resumed_at"]) == 1
    assert 0 < result["curves"][1]["resumed_at"][0] < frames
    assert (finished.folder(out) / "metrics.jsonl").read_text() == finished_metrics
    assert engram_status(folder, frames) == "done"
    for curve in result["curves"]:
        assert curve["frames"] == sorted(set(curve["frames"])) and curve["frames"][-1] >= frames
    assert (out / "learning.png").stat().st_size > 0
    assert json.loads((out / "learning.json").read_text())["table"][0]["at"]["2560"]["n"] == 2


def _scripted_vector_env():
    """Two envs whose rewards and episode ends follow a script."""
    import numpy as np
    from gymnasium.vector import VectorEnv

    class Scripted(VectorEnv):
        num_envs = 2

        def __init__(self):
            self.script = [
                (np.array([4.0, -3.0]), np.array([False, False])),
                (np.array([7.0, 0.5]), np.array([True, False])),
                (np.array([1.0, 1.0]), np.array([False, True])),
            ]

        def reset(self, **kwargs):
            return None, {}

        def step(self, actions):
            rewards, done = self.script.pop(0)
            return None, rewards, done, np.zeros(2, bool), {}

    return Scripted()


def test_rllib_trains_on_clipped_rewards_and_logs_raw_scores(tmp_path):
    from benchmarks.rllib_impala import ClippedRewardsRawScores

    log = tmp_path / "episodes.log"
    env = ClippedRewardsRawScores(_scripted_vector_env(), str(log))
    env.reset()
    clipped = [env.step(None)[1].tolist() for _ in range(3)]
    assert clipped == [[1.0, -1.0], [1.0, 0.5], [1.0, 1.0]]
    assert log.read_text().split() == ["11", "-1.5"]  # env 0: 4 + 7; env 1: −3 + 0.5 + 1


def test_a_run_not_yet_trained_reads_as_an_empty_curve_and_scores_nothing(tmp_path):
    spec = RunSpec("smoke", None, 0, 1000, config="configs/smoke.yaml")
    curve = engram_curve(spec, tmp_path)
    assert curve.frames == [] and curve.at(500) is None
    assert score([curve], [500])[0]["at"]["500"] is None


def test_a_named_config_trains_on_its_own_game_unless_games_are_given():
    def games_of(games_arg, configs):
        games = learning.requested_games(games_arg, configs_given=bool(configs))
        specs = learning.sweep_specs(configs or ["configs/pong_lstm.yaml"], games, [0], 1000, [], False)
        return sorted({spec.game for spec in specs})

    assert games_of(None, ["configs/freeway_lstm.yaml"]) == ["freeway"]
    assert games_of(None, []) == ["breakout"]
    assert games_of("pong,breakout", ["configs/freeway_lstm.yaml"]) == ["breakout", "pong"]
    assert games_of("", ["configs/freeway_lstm.yaml"]) == ["freeway"]


def test_runs_of_an_earlier_sweep_are_reused_only_when_they_are_the_same_run_and_reached_the_budget(tmp_path):
    earlier = tmp_path / "earlier.json"
    stored = {"label": "smoke", "game": None, "seed": 0, "config": "configs/smoke.yaml",
              "overrides": ["agent.lstm_size=8"], "frames": [100, 200, 300], "returns": [0.1, 0.2, 0.3],
              "resumed_at": [150, 250]}
    earlier.write_text(json.dumps({"curves": [stored]}))
    reusable = learning.reusable_curves([earlier])

    def spec(seed=0, frames=300, overrides=("agent.lstm_size=8",)):
        return RunSpec("smoke", None, seed, frames, config="configs/smoke.yaml", overrides=overrides)

    specs = [spec(), spec(seed=1), spec(overrides=()), spec(frames=301)]
    result = learning.run_sweep(specs, tmp_path / "sweep", [200, 300], train=False, reusable=reusable)
    assert [run["did"] for run in result["runs"]] == ["reused", "read", "read", "read"]
    assert result["curves"][0]["returns"] == [0.1, 0.2, 0.3] and result["curves"][0]["resumed_at"] == [150, 250]
    assert all(curve["frames"] == [] for curve in result["curves"][1:])  # nothing trained in --out

    # The sweep's own learning.json can be reused in turn.
    again = learning.reusable_curves([tmp_path / "sweep" / "learning.json"])
    assert learning.reused_curve(spec(), again).returns == [0.1, 0.2, 0.3]
    # A run longer than the sweep's budget is cut at the first point at or past the budget.
    assert learning.reused_curve(spec(frames=200), reusable).frames == [100, 200]
    assert learning.reused_curve(spec(frames=200), reusable).resumed_at == [150]
    assert learning.reused_curve(spec(frames=150), reusable).frames == [100, 200]


def test_reuse_matches_the_settings_the_overrides_leave_not_their_order():
    def spec(*overrides):
        return RunSpec("smoke", None, 0, 300, config="configs/smoke.yaml", overrides=overrides)

    reusable = {learning._identity(spec("a.x=1", "b.y=2")): Curve(spec("a.x=1", "b.y=2"), [300], [0.5])}
    assert learning.reused_curve(spec("b.y=2", "a.x=1"), reusable).returns == [0.5]
    assert learning.reused_curve(spec("a.x=3", "b.y=2", "a.x=1"), reusable).returns == [0.5]  # the last a.x wins
    assert learning.reused_curve(spec("a.x=1", "b.y=2", "a.x=3"), reusable) is None
    # A section set whole and one of its keys set alone leave different settings in each order.
    whole_then_key = spec("a={x: 1}", "a.x=2")
    reusable = {learning._identity(whole_then_key): Curve(whole_then_key, [300], [0.5])}
    assert learning.reused_curve(spec("a={x: 1}", "a.x=2"), reusable) is not None
    assert learning.reused_curve(spec("a.x=2", "a={x: 1}"), reusable) is None


def test_reusing_a_file_that_is_not_a_learning_json_names_it(tmp_path):
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"table": []}))
    with pytest.raises(SystemExit, match="wrong.json"):
        learning.reusable_curves([wrong])


def test_a_run_that_fails_does_not_end_the_sweep_and_the_command_exits_nonzero(tmp_path, monkeypatch):
    monkeypatch.setattr(learning, "run_engram", run_failing_seed_zero("memory_cue"))
    status = learning.main(["--config", "configs/smoke.yaml", "--frames", "100", "--seeds", "2", "--at", "100",
                            "--out", str(tmp_path)])
    stored = json.loads((tmp_path / "learning.json").read_text())
    assert [run["did"] for run in stored["runs"]] == ["failed", "trained"]
    assert stored["runs"][0]["error"] == "seed 0 diverged" and "error" not in stored["runs"][1]
    assert stored["table"][0]["at"]["100"]["values"] == [0.5]
    assert status == 1


def _sweep_file(path, seeds_returns, overrides):
    curves = [{"label": "maze_lstm", "game": None, "seed": seed, "config": "configs/maze_lstm.yaml",
               "overrides": overrides, "frames": [100, 200], "returns": returns}
              for seed, returns in enumerate(seeds_returns)]
    path.write_text(json.dumps({"at_frames": [100, 200], "curves": curves}))
    return path


def test_combine_puts_sweeps_of_one_config_side_by_side_under_their_labels(tmp_path):
    first = _sweep_file(tmp_path / "a.json", [[0.0, 1.0], [0.0, 3.0]], ["learner.entropy_cost=0.02"])
    second = _sweep_file(tmp_path / "b.json", [[0.5, 0.25], [0.5, 0.75], [0.5, 0.5]], [])
    status = learning.main(["--combine", f"entropy={first}", "--combine", f"default={second}",
                            "--out", str(tmp_path / "both")])
    assert status == 0
    result = json.loads((tmp_path / "both" / "learning.json").read_text())
    rows = {row["label"]: row["at"]["200"] for row in result["table"]}
    assert rows["entropy"]["values"] == [1.0, 3.0] and rows["entropy"]["mean"] == 2.0
    assert rows["default"]["values"] == [0.25, 0.75, 0.5] and rows["default"]["mean"] == 0.5
    assert result["at_frames"] == [100, 200]  # the first source's, when --at is not given
    assert result["sources"] == {"entropy": str(first), "default": str(second)}
    assert (tmp_path / "both" / "learning.png").stat().st_size > 0
    # The combined file reads back like any sweep's.
    assert len(learning.reusable_curves([tmp_path / "both" / "learning.json"])) == 5


def test_combine_refuses_a_repeated_label_a_missing_one_and_anything_that_trains(tmp_path):
    source = _sweep_file(tmp_path / "a.json", [[0.0, 1.0]], [])
    with pytest.raises(SystemExit, match="its own label"):
        learning.main(["--combine", f"x={source}", "--combine", f"x={source}", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):  # argparse: LABEL=JSON expected
        learning.main(["--combine", str(source), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        learning.main(["--combine", f"x={source}", "--config", "configs/smoke.yaml", "--out", str(tmp_path / "o")])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"at_frames": [1], "curves": []}))
    with pytest.raises(SystemExit, match="no curves"):
        learning.main(["--combine", f"x={empty}", "--out", str(tmp_path / "o")])
    unscored = tmp_path / "unscored.json"
    unscored.write_text(json.dumps({"curves": json.loads(source.read_text())["curves"]}))
    with pytest.raises(SystemExit, match="records no at_frames.*give --at"):
        learning.main(["--combine", f"x={unscored}", "--out", str(tmp_path / "o")])
    assert learning.main(["--combine", f"x={unscored}", "--at", "200", "--out", str(tmp_path / "o")]) == 0
