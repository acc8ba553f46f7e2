"""Benchmark of SAM vs dense memories (Rae et al. 2016, arXiv 1610.09027, §4.1, Fig. 2).

Paper setup: LSTM controller with 100 units, word size 32, 4 heads (K = 4), batch 8 for
speed and batch 1 for memory; N swept from 1k to 1M. For SAM (exact top-K and the faiss
index), DAM and the dense NTM-style core this measures

- time: forward + backward of a T-step unroll from an empty memory, divided by T
  (initial-state allocation excluded), batch 8;
- memory: bytes held for backward over 100 steps, batch 1: tensors seen by
  ``torch.autograd.graph.saved_tensors_hooks``, counted once per storage, inputs excluded,
  plus SAM's undo log (indices and old rows). Parameters are counted (they are the same
  for every N).

Timings keep the fastest of ``--repeats`` runs; SAM unrolls T = 10 steps (5 with
``--quick``), dense cores 2 (their per-step cost does not depend on T). Dense cores are
skipped where their predicted footprint exceeds ``--dense-budget-gib`` (the table says
"skipped"); where 100 steps would not fit, their memory is measured over fewer steps and
scaled linearly (a dense step saves the same tensors every step; the note says so). Memories start empty, as at an episode start: the faiss index
then holds only the rows written so far (an unwritten row is all zero and is represented
by the index's zero-row candidates), so its cost tracks writes, not N.

Run: ``python -m benchmarks.sam [--quick] [--json PATH] [--png PATH]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from agents.sam import SAMCore
from agents.sam.dense_cores import DAMCore, NTMCore
from agents.sam.undo_log import open_log

INPUT_SIZE = 32
CONFIG = {"hidden_size": 100, "word_size": 32, "num_heads": 4, "top_k": 4}

MODELS = {
    "SAM (exact)": lambda n: SAMCore(INPUT_SIZE, memory_slots=n, index="exact", **CONFIG),
    "SAM (faiss)": lambda n: SAMCore(INPUT_SIZE, memory_slots=n, index="faiss", **CONFIG),
    "DAM (dense)": lambda n: DAMCore(INPUT_SIZE, memory_slots=n, **CONFIG),
    "NTM (dense)": lambda n: NTMCore(INPUT_SIZE, memory_slots=n, **CONFIG),
}


def _dense(name: str) -> bool:
    return "dense" in name


def time_per_step(name: str, slots: int, batch_size: int, steps: int) -> float:
    """Seconds of forward + backward per step of a ``steps``-step unroll."""
    torch.manual_seed(0)
    core = MODELS[name](slots)
    features = torch.randn(steps, batch_size, INPUT_SIZE)
    state = core.initial_state(batch_size)
    started = time.perf_counter()
    total = 0
    for t in range(steps):
        output, state = core(features[t], state)
        total = total + output.features.square().mean()
    total.backward()
    return (time.perf_counter() - started) / steps


def stored_bytes(name: str, slots: int, steps: int = 100) -> int:
    """Bytes held for backward over ``steps`` steps at batch 1 (see module docstring)."""
    torch.manual_seed(0)
    core = MODELS[name](slots)
    features = torch.randn(steps, 1, INPUT_SIZE)
    state = core.initial_state(1)
    inputs = {features.untyped_storage().data_ptr()}
    storages: dict[int, int] = {}
    keep = []

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in inputs:
            storages[storage.data_ptr()] = storage.nbytes()
        keep.append(tensor)  # alive until backward, so storage pointers stay unique
        return tensor

    total = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        for t in range(steps):
            output, state = core(features[t], state)
            total = total + output.features.square().mean()
    log = open_log(state["memory"])
    extra = log.stored_bytes() if log is not None else 0
    result = sum(storages.values()) + extra
    keep.clear()
    total.backward()
    return result


def predicted_dense_bytes(slots: int, batch_size: int, steps: int) -> int:
    """A dense step saves up to ~8 N×W float tensors (measured for NTM; DAM ~2)."""
    return 8 * batch_size * slots * CONFIG["word_size"] * 4 * steps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {1k, 16k}, short unrolls (< 60 s)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--png", help="write the time and memory plots here")
    parser.add_argument("--dense-budget-gib", type=float, default=4.0,
                        help="skip or shorten dense runs predicted to hold more than this")
    parser.add_argument("--repeats", type=int, default=2, help="timings keep the fastest repeat")
    args = parser.parse_args(argv)
    slots_list = [1024, 16384] if args.quick else [1024, 4096, 16384, 65536, 262144, 1048576]
    time_steps = 5 if args.quick else 10
    memory_steps = 20 if args.quick else 100
    budget = args.dense_budget_gib * 2**30
    rows = []
    for slots in slots_list:
        for name in MODELS:
            row = {"model": name, "slots": slots, "seconds_per_step": None, "stored_bytes": None,
                   "note": ""}
            dense = _dense(name)
            steps = 2 if dense else time_steps  # a dense step's cost does not depend on T
            if dense and predicted_dense_bytes(slots, 8, steps) > budget:
                row["note"] = "time skipped (over budget)"
            else:
                time_per_step(name, min(slots, 1024), 8, 2)  # warm-up
                row["seconds_per_step"] = min(
                    time_per_step(name, slots, 8, steps) for _ in range(args.repeats)
                )
            fitting = memory_steps
            while dense and fitting > 1 and predicted_dense_bytes(slots, 1, fitting) > budget:
                fitting //= 2
            if dense and predicted_dense_bytes(slots, 1, fitting) > budget:
                row["note"] += " memory skipped (over budget)"
            else:
                row["stored_bytes"] = stored_bytes(name, slots, fitting) * memory_steps // fitting
                if fitting < memory_steps:
                    row["note"] += f" memory measured over {fitting} steps, scaled x{memory_steps // fitting}"
            rows.append(row)
            print(_format_row(row), flush=True)
    result = {"config": dict(CONFIG, input_size=INPUT_SIZE, time_batch=8, memory_batch=1,
                             time_steps=time_steps, memory_steps=memory_steps,
                             threads=torch.get_num_threads()),
              "rows": rows}
    print(_table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    if args.png:
        _plot(rows, args.png)
    return result


def _format_row(row) -> str:
    seconds = "-" if row["seconds_per_step"] is None else f"{row['seconds_per_step'] * 1e3:10.2f} ms"
    stored = "-" if row["stored_bytes"] is None else f"{row['stored_bytes'] / 2**20:10.2f} MiB"
    return f"{row['model']:12s} N={row['slots']:>8d}  {seconds:>13s}  {stored:>14s}  {row['note']}"


def _table(rows) -> str:
    lines = ["| model | N | fwd+bwd per step (batch 8) | stored for backward, 100 steps (batch 1) | note |",
             "|---|---:|---:|---:|---|"]
    for row in rows:
        seconds = "skipped" if row["seconds_per_step"] is None else f"{row['seconds_per_step'] * 1e3:.2f} ms"
        stored = "skipped" if row["stored_bytes"] is None else f"{row['stored_bytes'] / 2**20:.2f} MiB"
        lines.append(f"| {row['model']} | {row['slots']} | {seconds} | {stored} | {row['note'].strip()} |")
    return "\n".join(lines)


def _plot(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in MODELS:
        mine = [r for r in rows if r["model"] == name]
        timed = [r for r in mine if r["seconds_per_step"] is not None]
        stored = [r for r in mine if r["stored_bytes"] is not None]
        left.plot([r["slots"] for r in timed], [r["seconds_per_step"] for r in timed], "o-", label=name)
        right.plot([r["slots"] for r in stored], [r["stored_bytes"] / 2**20 for r in stored], "o-", label=name)
    for axis, label in ((left, "seconds per step (fwd+bwd, batch 8)"), (right, "MiB stored, 100 steps, batch 1")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("memory slots N")
        axis.set_ylabel(label)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
