"""Config loading: typos and bad values fail clearly; the CLI exits 2 and writes nothing."""

from pathlib import Path

import pytest

from engram.cli import main
from engram.config import ConfigError, Config, apply_override, dump_config, from_dict, load_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path):
    assert isinstance(load_config(path), Config)


def test_unknown_key_names_its_path_and_the_closest_key():
    with pytest.raises(ConfigError) as error:
        from_dict({"learner": {"learning_rte": 0.1}})
    assert "learner.learning_rte" in str(error.value)
    assert "learner.learning_rate" in str(error.value)


def test_unknown_section_is_reported():
    with pytest.raises(ConfigError, match="did you mean 'learner'"):
        from_dict({"lerner": {}})


def test_bad_value_names_key_and_value():
    with pytest.raises(ConfigError, match=r"learner\.learning_rate.*greater than 0.*-0\.5"):
        from_dict({"learner": {"learning_rate": -0.5}})
    with pytest.raises(ConfigError, match=r"env\.kind"):
        from_dict({"env": {"kind": "doom"}})


def test_unknown_game_lists_the_closest_rom_ids():
    with pytest.raises(ConfigError, match="ms_pacman"):
        from_dict({"env": {"atari": {"game": "ms_packman"}}})


def test_batch_must_hold_whole_rollouts():
    with pytest.raises(ConfigError, match="multiple of resources.envs_per_actor"):
        from_dict({"resources": {"envs_per_actor": 12}, "learner": {"batch_size": 32}})


def test_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learner: {learning_rate: 0.1}\n")
    config = load_config(path, ["learner.learning_rate=3e-4", "learner.reward_clip=null", "run.name=x"])
    assert config.learner.learning_rate == 3e-4 and config.learner.reward_clip is None and config.run.name == "x"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, "learner.learning_rate")
    with pytest.raises(ConfigError, match="is a value"):
        apply_override({"run": {"name": "a"}}, "run.name.first=b")


def test_dumped_config_loads_back_identically(tmp_path):
    config = load_config(CONFIGS[0], ["run.seed=7"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_cli_config_error_exits_2_and_writes_no_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "configs/smoke.yaml", "--set", "learner.entropy_cst=0.1", "--run-dir", str(run_dir)])
    assert code == 2
    assert "learner.entropy_cost" in capsys.readouterr().err
    assert not run_dir.exists()


def test_cli_missing_config_exits_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_memory_cores_take_a_checkpointed_unroll_with_their_journal():
    from engram import build
    from learners.bptt.unroll import BudgetedUnroll

    overrides = [
        "learner.bptt.mode=msm", "learner.bptt.memory_budget=512MiB", "agent.memory.memory_slots=64",
        "learner.bptt.plan_units=1024",
    ]
    config = load_config(CONFIGS[0].parent / "pong_sam.yaml", overrides)
    agent = build.agent_factory(config, build.probe_env(config))()
    unroll = build.learner(config, agent).unroll
    assert isinstance(unroll, BudgetedUnroll) and unroll.mode == "msm" and unroll.plan_units == 1024
    state = agent.initial_state(2)
    journal = unroll.open_journal(state)
    assert journal.tables[0] is state["memory"]
    journal.close()


def test_memory_tasks_refuse_a_checkpointed_unroll_they_would_ignore():
    overrides = ["learner.bptt.mode=msm", "learner.bptt.memory_budget=1GiB"]
    with pytest.raises(ConfigError, match="applies to run.kind=rl"):
        load_config(CONFIGS[0].parent / "copy_sam.yaml", overrides)


def test_plan_units_below_the_planners_floor_are_refused():
    with pytest.raises(ConfigError, match="plan_units"):
        load_config(CONFIGS[0], ["learner.bptt.plan_units=4"])


def test_an_empty_config_file_is_refused_not_run_as_the_default(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(path)


def test_a_malformed_set_value_names_the_key():
    with pytest.raises(ConfigError, match="learner.learning_rate.*not valid YAML"):
        load_config("configs/smoke.yaml", ["learner.learning_rate=[1"])


def test_a_folder_with_metrics_but_no_checkpoint_is_not_reused_without_resume(tmp_path):
    from engram.train import check_run_dir

    config = load_config("configs/smoke.yaml")
    (tmp_path / "metrics.jsonl").write_text('{"steps": 1}\n')
    with pytest.raises(ConfigError, match="metrics.jsonl"):
        check_run_dir(tmp_path, resume=False)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"steps": 1}\n'
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.parametrize("overrides, message", [
    (["resources.num_learners=3"], "must divide the rollouts per update"),  # smoke: 32 / 16 = 2 rollouts
    (["resources.num_learners=2", "resources.learner_placement=driver"], "learner_placement must be auto or actor"),
])
def test_data_parallel_learners_are_refused_where_they_cannot_split_the_batch(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/smoke.yaml", overrides)


def test_data_parallel_learners_refuse_the_exploration_bonus():
    with pytest.raises(ConfigError, match="num_learners: 1"):
        load_config("configs/pong_lstm.yaml", ["resources.num_learners=2", "learner.batch_size=64", "exploration.kind=pixelcnn"])


def test_two_learners_run_as_actors_and_reserve_a_bundle_each():
    from engram.preflight import resource_demand

    config = load_config("configs/smoke.yaml", ["resources.num_learners=2", "resources.learner_cpus=0.5"])
    assert config.resources.learner_is_actor
    assert resource_demand(config)[-2:] == [{"CPU": 0.5, "GPU": 0.0}] * 2


def test_an_unknown_bptt_mode_lists_the_modes_the_planner_knows():
    from learners.bptt.budget import MODES

    with pytest.raises(ConfigError, match="unknown BPTT mode 'mmm'; expected full or one of " + ", ".join(MODES)):
        load_config("configs/smoke.yaml", ["learner.bptt.mode=mmm"])


def test_center_frames_takes_the_old_booleans_and_names_the_three_choices():
    assert from_dict({"agent": {"center_frames": True}}).agent.center_frames == "mean"
    assert from_dict({"agent": {"center_frames": False}}).agent.center_frames == "none"
    assert from_dict({"agent": {"center_frames": "background"}}).agent.center_frames == "background"
    with pytest.raises(ConfigError, match="center_frames"):
        from_dict({"agent": {"center_frames": "median"}})


def test_a_step_code_is_refused_on_the_dense_cores_and_at_odd_sizes():
    sam = from_dict({"agent": {"core": "sam", "memory": {"time_code": 16}}})
    assert sam.agent.core_options()["time_code"] == 16
    with pytest.raises(ConfigError, match="time_code applies to sam and sdnc, not dam"):
        from_dict({"agent": {"core": "dam", "memory": {"time_code": 16}}})
    with pytest.raises(ConfigError, match="time_code"):
        from_dict({"agent": {"core": "sam", "memory": {"time_code": 5}}})
    assert "time_code" not in from_dict({"agent": {"core": "ntm"}}).agent.core_options()
