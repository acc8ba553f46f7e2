"""engram bench memory: POPGym's MMER and memory_len's solved share, checked by hand; the sweeps' runs."""

import json

import pytest
from bench_fakes import run_failing_seed_zero

from benchmarks import learning, memory
from benchmarks.learning import Curve, RunSpec


def _curve(label, seed, returns):
    return Curve(RunSpec(label, None, seed, 100 * len(returns)), [100 * (i + 1) for i in range(len(returns))],
                 list(returns))


def test_mmer_is_the_best_mean_return_of_a_run_averaged_over_seeds():
    # POPGym: the mean episodic return of each epoch, its maximum over training, then seeds' mean.
    curves = [_curve("RepeatPreviousMedium/sam", 0, [-0.5, 0.2, 0.1]),
              _curve("RepeatPreviousMedium/sam", 1, [-0.4, -0.1, 0.4]),
              _curve("RepeatPreviousMedium/lstm", 0, [-0.6, -0.5])]
    rows = {row["core"]: row for row in memory.popgym_table(curves)}
    assert rows["sam"]["mmer"]["values"] == [0.2, 0.4]
    assert rows["sam"]["mmer"]["mean"] == pytest.approx(0.3) and rows["sam"]["mmer"]["std"] == pytest.approx(0.02 ** 0.5)
    assert rows["lstm"]["mmer"]["values"] == [-0.5]
    assert "0.300 ± 0.141 (2)" in memory.format_popgym(list(rows.values()))
    assert memory.mmer(_curve("x/lstm", 0, [])) is None


def test_memory_len_scores_the_share_solved_at_the_end_of_the_run():
    # rewards are +1 or −1 per episode: a mean return of 0.5 means 75% solved
    curves = [_curve("N10/lstm/whole-episode", 0, [-1.0, 0.5]), _curve("N10/lstm/unroll20", 0, [0.0, -0.2]),
              _curve("N30/lstm/whole-episode", 0, [1.0, 1.0])]
    curves[0].spec = RunSpec("N10/lstm/whole-episode", None, 0, 200, overrides=("learner.unroll_length=11",))
    rows = {row["unroll"]: row for row in memory.memory_len_table(curves)}
    assert rows["whole-episode"]["solved"]["10"]["values"] == [0.75]
    assert rows["whole-episode"]["solved"]["30"]["values"] == [1.0]
    assert rows["unroll20"]["solved"]["10"]["values"] == [pytest.approx(0.4)]
    # the unroll and BPTT each run trained with, from its resolved config, per N
    assert rows["whole-episode"]["settings"]["10"] == "unroll 11, full BPTT"
    curves[2].spec = RunSpec("N30/lstm/whole-episode", None, 0, 200, config=memory.MEMORY_LEN_CONFIG,
                             overrides=("learner.unroll_length=31", "learner.bptt.mode=msm",
                                        "learner.bptt.memory_budget=8MiB"))
    rows = {row["unroll"]: row for row in memory.memory_len_table(curves)}
    assert rows["whole-episode"]["settings"]["30"] == "unroll 31, msm BPTT within 8MiB"
    assert "whole-episode: N=10: unroll 11, full BPTT; N=30: unroll 31, msm BPTT within 8MiB" in \
        memory.format_memory_len(list(rows.values()), [10, 30])


def test_memory_len_runs_pair_a_whole_episode_unroll_with_a_short_one():
    specs = memory.memory_len_specs([10, 100], ["lstm"], [0], 1000, [], short_unroll=20, bptt_budget="8MiB")
    by_label = {s.label: s for s in specs}
    assert set(by_label) == {"N10/lstm/whole-episode", "N100/lstm/whole-episode", "N100/lstm/unroll20"}
    assert "learner.unroll_length=101" in by_label["N100/lstm/whole-episode"].overrides
    assert "learner.bptt.mode=msm" in by_label["N100/lstm/whole-episode"].overrides
    assert "learner.unroll_length=20" in by_label["N100/lstm/unroll20"].overrides
    # N = 10 fits in 20 steps: the short unroll would be the same run, so there is none


@pytest.mark.e2e
def test_a_tiny_popgym_sweep_trains_scores_and_plots(tmp_path):
    out = tmp_path / "sweep"
    specs = memory.popgym_specs(["RepeatPreviousEasy"], ["lstm"], [0], 2048,
                                ["resources.envs_per_actor=16", "learner.batch_size=16", "checkpoint.interval_s=0.5"])
    result = memory.run_sweep("popgym", specs, out, train=True)
    (row,) = result["table"]
    assert row["env"] == "RepeatPreviousEasy" and row["core"] == "lstm" and row["mmer"]["n"] == 1
    assert -1.0 <= row["mmer"]["mean"] <= 1.0
    assert json.loads((out / "memory.json").read_text())["benchmark"] == "memory/popgym"
    assert (out / "memory.png").stat().st_size > 0
    again = memory.run_sweep("popgym", specs, out, train=True)  # finished runs are read, not rerun
    assert again["table"] == result["table"]


def test_reuse_reads_an_earlier_sweeps_runs_with_the_same_settings_and_seed(tmp_path):
    from dataclasses import asdict

    from benchmarks.learning import reusable_curves

    earlier = RunSpec("RepeatPreviousHard/sam", None, 0, 200, config=memory.POPGYM_CONFIG,
                      overrides=("agent.feature_norm=true", "env.popgym.id=RepeatPreviousHard", "agent.core=sam"))
    stored = tmp_path / "earlier.json"
    stored.write_text(json.dumps({"curves": [{**asdict(earlier), "steps": [100, 200], "returns": [-0.5, -0.3]}]}))
    reusable = reusable_curves([stored])

    specs = memory.popgym_specs(["RepeatPreviousHard"], ["sam"], [0, 1], 200, ["agent.feature_norm=true"])
    result = memory.run_sweep("popgym", specs, tmp_path / "sweep", train=False, reusable=reusable)
    by_seed = {c["seed"]: c for c in result["curves"]}
    assert by_seed[0]["frames"] == [100, 200] and by_seed[0]["returns"] == [-0.5, -0.3]
    assert by_seed[0]["budget"] == 200
    assert by_seed[1]["returns"] == []  # seed 1 was never trained: nothing to reuse
    (row,) = result["table"]
    assert row["mmer"]["values"] == [-0.3]
    rewritten = reusable_curves([tmp_path / "sweep" / "memory.json"])  # the bench reads its own layout back
    assert {key: (c.spec, c.frames, c.returns) for key, c in rewritten.items()} == \
        {key: (c.spec, c.frames, c.returns) for key, c in reusable.items()}

    other_settings = memory.popgym_specs(["RepeatPreviousHard"], ["sam"], [0], 200, [])
    longer_budget = memory.popgym_specs(["RepeatPreviousHard"], ["sam"], [0], 300, ["agent.feature_norm=true"])
    for specs in (other_settings, longer_budget):
        result = memory.run_sweep("popgym", specs, tmp_path / "other", train=False, reusable=reusable)
        assert result["curves"][0]["returns"] == []


def test_a_run_that_fails_does_not_end_the_memory_sweep_and_the_command_exits_nonzero(tmp_path, monkeypatch):
    monkeypatch.setattr(learning, "run_engram", run_failing_seed_zero("bsuite_memory"))
    status = memory.main(["memory_len", "--lengths", "10", "--cores", "lstm", "--seeds", "2", "--steps", "100",
                          "--out", str(tmp_path)])
    stored = json.loads((tmp_path / "memory.json").read_text())
    assert [run["did"] for run in stored["runs"]] == ["failed", "trained"]
    assert stored["runs"][0] == {**stored["runs"][0], "run": "N10/lstm/whole-episode/seed0", "error": "seed 0 diverged"}
    (row,) = stored["table"]
    assert row["solved"]["10"]["values"] == [0.75]
    assert status == 1


def test_the_bptt_budget_can_differ_by_memory_length():
    specs = memory.memory_len_specs([10, 100, 1000], ["sam"], [0], 1000, [], short_unroll=20,
                                    bptt_budget="8MiB,1000:512MiB")
    budgets = {s.label: [o for o in s.overrides if "memory_budget" in o] for s in specs}
    assert budgets["N10/sam/whole-episode"] == budgets["N100/sam/whole-episode"] == ["learner.bptt.memory_budget=8MiB"]
    assert budgets["N1000/sam/whole-episode"] == ["learner.bptt.memory_budget=512MiB"]
    assert budgets["N1000/sam/unroll20"] == []
    only_long = memory.memory_len_specs([10, 1000], ["sam"], [0], 1000, [], 20, bptt_budget="1000:512MiB")
    assert [o for s in only_long if s.label == "N10/sam/whole-episode" for o in s.overrides if "bptt" in o] == []
    with pytest.raises(SystemExit, match="lots:64MiB"):
        memory.budgets_by_length("lots:64MiB")
