"""Next-character prediction (``run.kind: text``): the text's handling (vocabulary, the
held-out tail, contiguous streams, errors that name the file), the model's two ways to
predict, bits per character against a hand-computed case, STRAW's re-plan statistics, and
`engram train` / `engram eval` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engram.config import ConfigError, from_dict
from envs.text_corpus import StreamBatches, TextError, load_text
from learners.text_trainer import CharPredictor, evaluate_text, macro_statistics


def _write(tmp_path, text, name="t.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------ the text

def test_vocabulary_split_and_round_trip(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 40 + "ζ"  # the held-out tail has a character of its own
    corpus = load_text(_write(tmp_path, text), test_fraction=0.1)
    assert corpus.vocabulary == "".join(sorted(set(text)))
    assert len(corpus.train) + len(corpus.test) == len(text)
    assert len(corpus.test) == round(0.1 * len(text))
    assert corpus.decode(np.concatenate([corpus.train, corpus.test])) == text  # nothing lost, nothing reordered
    assert corpus.decode(corpus.test).endswith("ζ") and "ζ" not in corpus.decode(corpus.train)


def test_python_docs_ship_with_python():
    corpus = load_text("python_docs", test_fraction=0.1)
    assert len(corpus.train) > 100_000 and 60 < corpus.vocabulary_size < 300


def test_text_errors_name_the_problem(tmp_path):
    with pytest.raises(TextError, match="no such file"):
        load_text(str(tmp_path / "missing.txt"), test_fraction=0.1)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 500)
    with pytest.raises(TextError, match="not UTF-8"):
        load_text(str(bad), test_fraction=0.1)
    with pytest.raises(TextError, match="at least 1000"):
        load_text(_write(tmp_path, "short"), test_fraction=0.1)
    with pytest.raises(ValueError, match="test_fraction"):
        load_text("python_docs", test_fraction=1.0)


def test_streams_are_contiguous_and_windows_follow_on():
    tokens = np.arange(103)
    batches = StreamBatches(tokens, batch_size=4, unroll_length=5)  # 4 streams of 25; 103 % 4 dropped
    first, wrapped = batches.next()
    assert not wrapped and first.shape == (6, 4)
    np.testing.assert_array_equal(first[:, 2], np.arange(50, 56))  # stream 2 starts at 2·25
    second, _ = batches.next()
    np.testing.assert_array_equal(second[0], first[-1])  # the last target is the next first input
    np.testing.assert_array_equal(second[:, 0], np.arange(5, 11))
    assert batches.windows_per_pass == 4
    for _ in range(2):
        batches.next()
    again, wrapped = batches.next()  # 5·5 + 1 > 25: the streams start over
    assert wrapped and np.array_equal(again, first)
    with pytest.raises(TextError, match="fewer than one window"):
        StreamBatches(tokens, batch_size=50, unroll_length=5)


# ------------------------------------------------------------------------ the model

def _model(core="lstm", vocabulary=7, **options):
    from agent_settings import core_options
    from agents.core_names import STRAW_VARIANTS
    from agents.registry import core_factory

    small = {"lstm": {"hidden_size": 8}}.get(core, {"hidden_size": 8, "plan_length": 4, "patch_size": 2})
    built = core_factory(core, vocabulary, core_options(core, **small, **options))(vocabulary)
    return CharPredictor(built, vocabulary, readout=core not in STRAW_VARIANTS)


def test_a_model_that_predicts_uniformly_scores_log2_of_the_vocabulary():
    torch.manual_seed(0)
    model = _model()
    torch.nn.init.zeros_(model.readout.weight)
    torch.nn.init.zeros_(model.readout.bias)
    tokens = np.random.default_rng(0).integers(0, 7, size=2000)
    scores = evaluate_text(model, tokens, batch_size=4, unroll_length=10)
    assert scores["bits_per_character"] == pytest.approx(math.log2(7), rel=1e-6)
    assert scores["characters"] == 4 * ((2000 // 4 - 1) // 10) * 10
    assert "replan_rate" not in scores


def test_bits_per_character_is_the_cross_entropy_of_the_next_character():
    torch.manual_seed(0)
    model = _model()
    tokens = np.random.default_rng(1).integers(0, 7, size=44)  # 2 streams of 22: two windows of 10
    scores = evaluate_text(model, tokens, batch_size=2, unroll_length=10)
    # by hand: each stream read in one go, state from the start, log-softmax of the next character
    with torch.no_grad():
        streams = torch.from_numpy(tokens[:44].reshape(2, 22).T)
        logits, _, _, _ = model(streams[:20], model.core.initial_state(2))
        expected = -torch.log_softmax(logits, -1).gather(-1, streams[1:21, :, None]).mean() / math.log(2)
    assert scores["bits_per_character"] == pytest.approx(float(expected), rel=1e-5)


def test_straw_predicts_from_its_plan_and_reports_its_macro_actions():
    torch.manual_seed(0)
    model = _model("straw")
    assert model.readout is None
    state = model.core.initial_state(3)
    logits, aux, telemetry, new_state = model(torch.randint(0, 7, (6, 3)), state)
    assert logits.shape == (6, 3, 7) and set(aux) == {"commitment"}
    assert torch.equal(logits[-1], new_state["plan"][:, :7, 0])
    statistics = macro_statistics(telemetry)
    assert 0.0 <= statistics["replan_rate"] <= 1.0
    with pytest.raises(ValueError, match="no logits of its own"):
        CharPredictor(_model().core, 7, readout=False)(torch.zeros(2, 1, dtype=torch.long), _model().core.initial_state(1))


def test_macro_statistics_count_finished_macro_actions():
    replan = torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0]])
    lengths = torch.tensor([[0.0], [0.0], [0.0], [3.0], [1.0]])  # STRAW's macro_length: set when one ends
    statistics = macro_statistics({"replan": replan, "macro_length": lengths})
    assert statistics == {"replan_rate": pytest.approx(0.6), "macro_length_mean": 2.0, "macro_lengths": [3, 1]}


def test_training_lowers_the_held_out_bits_on_a_repetitive_text(tmp_path):
    from engram.text_prediction import corpus_of, model_of
    from learners.text_trainer import train_text

    config = _config(_write(tmp_path, "abcabd" * 400), updates=40)
    corpus = corpus_of(config)
    model = model_of(config, corpus.vocabulary_size)
    before = evaluate_text(model, corpus.test, batch_size=4, unroll_length=10)["bits_per_character"]
    result = train_text(model, corpus, updates=40, batch_size=8, unroll_length=10, learning_rate=1e-2, aux_costs={},
                        seed=0, evaluate_every=20, evaluate_batch_size=4)
    assert [p["update"] for p in result["curve"]] == [20, 40]
    assert result["test_bits_per_character"] < before - 0.5


# ------------------------------------------------------------------------ engram train / eval

def _config(source, core="lstm", **text):
    settings = {"source": source, "updates": 4, "evaluate_every": 2, "batch_size": 4, "unroll_length": 8,
                "evaluate_batch_size": 2, **text}
    agent = {"core": core, "lstm": {"hidden_size": 8}, "straw": {"hidden_size": 8, "plan_length": 4, "patch_size": 2}}
    return from_dict({"run": {"kind": "text", "name": "tiny"}, "agent": agent, "text": settings,
                      "telemetry": {"console": False}})


@pytest.mark.parametrize("core", ["lstm", "straw"])
def test_train_then_eval_a_text_run(tmp_path, core):
    from engram.evaluate import evaluate
    from engram.train import train

    run_dir = train(_config(_write(tmp_path, "to be or not to be, that is the question. " * 30), core),
                    str(tmp_path / "run"))
    result = json.loads((run_dir / "text_result.json").read_text())
    assert result["core"] == core and (result["replan_rate"] is not None) == (core == "straw")
    scored = evaluate(run_dir / "checkpoints", verbose=False)
    assert scored["bits_per_character"] == pytest.approx(result["test_bits_per_character"], abs=0.2 if core == "straw" else 1e-6)


def test_a_text_run_with_a_missing_file_fails_before_writing_its_folder(tmp_path):
    from engram.train import train

    with pytest.raises(ConfigError, match="no such file"):
        train(_config(str(tmp_path / "nope.txt")), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_diverging_text_run_stops_with_a_divergence_error(tmp_path):
    from engram.cli import main
    from engram.text_prediction import corpus_of, model_of
    from learners.errors import DivergenceError
    from learners.text_trainer import train_text

    config = _config(_write(tmp_path, "abcabd" * 400), core="straw")
    corpus = corpus_of(config)
    model = model_of(config, corpus.vocabulary_size)
    with torch.no_grad():
        model.core.commitment_bias.fill_(float("nan"))  # the commitment plan goes NaN at the first re-plan
    with pytest.raises(DivergenceError, match="update 1: STRAW's commitment plan is not finite"):
        train_text(model, corpus, updates=3, batch_size=4, unroll_length=8, learning_rate=1e-3, aux_costs={}, seed=0,
                   evaluate_every=3)
    # through the command line: exit 3 and the message, as for a diverging RL run
    source = _write(tmp_path, "abcabd" * 400, "d.txt")
    assert main(["train", "configs/text_straw.yaml", "--set", f"text.source={source}", "--set", "text.learning_rate=1e9",
                 "--set", "text.updates=50", "--set", "text.unroll_length=8", "--set", "text.batch_size=4",
                 "--set", "agent.straw.hidden_size=8", "--run-dir", str(tmp_path / "run")]) == 3
