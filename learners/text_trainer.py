"""Next-character prediction with a recurrent core (``run.kind: text``): STRAW's non-RL
experiment (Vezhnevets et al. 2016 §4.3) and its LSTM baseline, one process, no Ray.

The core reads one character a step as a one-hot vector. STRAW predicts the next character
from its action plan, ``softmax(A_t[:, 0])`` with one plan row per character: while it
commits to a plan it does not look at the characters it is given, so a macro-action is a
run of characters predicted in one go (a frequent word, say). Other cores predict through
a linear readout of their features.

Loss per update: the mean cross-entropy of the next character over the ``[T, B]`` window,
plus the core's auxiliary losses (STRAW's commitment cost λ·c_t[0], STRAWe's KL), each a
mean over the window times its weight (the same relative weights as in the RL loss, where
both are sums). Truncated BPTT: ``B`` contiguous streams, consecutive windows of ``T``
characters, the core's state carried (detached) from one window to the next. Adam.

Scores are in bits per character, ``−log₂ p(x_{t+1} | x_{≤t})``, on the held-out tail of
the text, read the same way with the state carried across windows. STRAW's gate is
sampled at evaluation as in training; the re-plan rate and the lengths of finished
macro-actions (steps between re-plans) come from its telemetry.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.core import RecurrentCore, State
from envs.text_corpus import StreamBatches, TextCorpus
from learners.errors import DivergenceError


class CharPredictor(nn.Module):
    """A core and, unless it predicts from its own plan, a linear readout to the characters."""

    def __init__(self, core: RecurrentCore, vocabulary_size: int, *, readout: bool):
        super().__init__()
        self.core = core
        self.vocabulary_size = vocabulary_size
        self.readout = nn.Linear(core.output_size, vocabulary_size) if readout else None

    def forward(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, dict, dict, State]:
        """``tokens`` ``[T, B]`` -> logits ``[T, B, V]``, auxiliary losses and telemetry (each
        ``name -> [T, B]``), and the state after the window."""
        inputs = F.one_hot(tokens, self.vocabulary_size).to(torch.get_default_dtype())
        logits, aux, telemetry = [], {}, {}
        for t in range(tokens.shape[0]):
            output, state = self.core(inputs[t], state)
            if self.readout is not None:
                logits.append(self.readout(output.features))
            elif output.policy_logits is not None:
                logits.append(output.policy_logits)
            else:
                raise ValueError("the core gives no logits of its own; build the CharPredictor with readout=True")
            for name, value in output.aux_losses.items():
                aux.setdefault(name, []).append(value)
            for name, value in output.telemetry.items():
                if value.dim() == 1:
                    telemetry.setdefault(name, []).append(value)
        stack = lambda values: {name: torch.stack(v) for name, v in values.items()}  # noqa: E731
        return torch.stack(logits), stack(aux), stack(telemetry), state


def detached(state: State) -> State:
    return {name: value.detach() for name, value in state.items()}


def macro_statistics(telemetry: dict[str, torch.Tensor]) -> dict:
    """Re-plan rate and finished macro-action lengths from STRAW's telemetry (empty otherwise)."""
    if "replan" not in telemetry:
        return {}
    lengths = telemetry["macro_length"][telemetry["macro_length"] > 0] if "macro_length" in telemetry else torch.zeros(0)
    return {
        "replan_rate": float(telemetry["replan"].float().mean()),
        "macro_length_mean": float(lengths.float().mean()) if lengths.numel() else None,
        "macro_lengths": lengths.long().tolist(),
    }


@torch.no_grad()
def evaluate_text(model: CharPredictor, tokens: np.ndarray, *, batch_size: int, unroll_length: int) -> dict:
    """Bits per character over ``tokens`` (all of its ``B`` streams, state carried), with
    STRAW's re-plan rate and macro-action lengths."""
    batches = StreamBatches(tokens, batch_size, unroll_length)
    model.eval()
    state = model.core.initial_state(batch_size)
    nats, count, collected = 0.0, 0, {}
    for _ in range(batches.windows_per_pass):
        window, _ = batches.next()
        window = torch.from_numpy(window)
        logits, _, telemetry, state = model(window[:-1], state)
        nats += float(F.cross_entropy(logits.flatten(0, 1), window[1:].flatten(), reduction="sum"))
        count += window[1:].numel()
        for name, value in telemetry.items():
            collected.setdefault(name, []).append(value)
    model.train()
    statistics = macro_statistics({name: torch.cat(values) for name, values in collected.items()})
    return {"bits_per_character": nats / count / math.log(2), "characters": count, **statistics}


def train_text(
    model: CharPredictor,
    corpus: TextCorpus,
    *,
    updates: int,
    batch_size: int,
    unroll_length: int,
    learning_rate: float,
    aux_costs: dict[str, float],
    seed: int,
    evaluate_every: int,
    evaluate_batch_size: int = 16,
    max_grad_norm: float = 1.0,
    log_fn: Callable[[int, dict], None] | None = None,
) -> dict:
    """Adam on the window loss for ``updates`` windows; scores the held-out text every
    ``evaluate_every`` updates and at the end.

    Returns a JSON-ready dict: ``test_bits_per_character`` (at the end), ``best_…`` and
    its update, ``train_bits_per_character`` (mean of the last ``evaluate_every`` windows),
    STRAW's ``replan_rate`` and ``macro_length_mean`` on the test text, the ``curve``,
    ``parameters``, ``characters_per_second`` and ``seconds``.
    """
    if min(updates, batch_size, unroll_length, evaluate_every) < 1:
        raise ValueError("updates, batch_size, unroll_length and evaluate_every must be >= 1")
    torch.manual_seed(seed)
    batches = StreamBatches(corpus.train, batch_size, unroll_length)
    recent = deque(maxlen=evaluate_every)  # the training losses since the last evaluation
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    state = model.core.initial_state(batch_size)
    curve, started, best = [], time.perf_counter(), (math.inf, 0)
    for update in range(1, updates + 1):
        window, wrapped = batches.next()
        if wrapped:
            state = model.core.initial_state(batch_size)
        window = torch.from_numpy(window)
        try:
            logits, aux, telemetry, state = model(window[:-1], detached(state))
        except FloatingPointError as error:
            raise DivergenceError(f"update {update}: {error}") from None
        prediction = F.cross_entropy(logits.flatten(0, 1), window[1:].flatten())
        loss = prediction + sum(aux_costs.get(name, 0.0) * value.mean() for name, value in aux.items())
        if not torch.isfinite(loss):
            raise DivergenceError(f"the text model's loss is {float(loss)} at update {update}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        recent.append(prediction.item() / math.log(2))
        if update % evaluate_every == 0 or update == updates:
            test = evaluate_text(model, corpus.test, batch_size=evaluate_batch_size, unroll_length=unroll_length)
            point = {
                "update": update,
                "train_bits_per_character": sum(recent) / len(recent),
                "test_bits_per_character": test["bits_per_character"],
                "seconds": time.perf_counter() - started,
                **{name: value for name, value in test.items() if name in ("replan_rate", "macro_length_mean")},
                **{f"train_{name}": value for name, value in macro_statistics(telemetry).items()
                   if name in ("replan_rate", "macro_length_mean")},
            }
            curve.append(point)
            if test["bits_per_character"] < best[0]:
                best = (test["bits_per_character"], update)
            if log_fn is not None:
                log_fn(update, {**point, "macro_lengths": test.get("macro_lengths", [])})
    final = curve[-1]
    return {
        "test_bits_per_character": final["test_bits_per_character"],
        "best_test_bits_per_character": best[0],
        "best_update": best[1],
        "train_bits_per_character": final["train_bits_per_character"],
        "replan_rate": final.get("replan_rate"),
        "macro_length_mean": final.get("macro_length_mean"),
        "updates": updates,
        "curve": curve,
        "parameters": sum(p.numel() for p in model.parameters()),
        "characters_per_second": updates * batch_size * unroll_length / final["seconds"],
        "seconds": final["seconds"],
        "test_characters": test["characters"],
    }
