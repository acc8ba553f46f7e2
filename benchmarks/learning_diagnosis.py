"""What one learner update does to an Atari agent: the numbers behind "it does not learn".

Plays fresh rollouts with an in-process actor and takes ``--updates`` learner steps as
``engram train`` would (the configured optimiser, clip and loss), and measures on each:

* the V-trace advantages (mean, spread) and the value error ``v_s − V(x_s)``;
* the gradient norm of each loss term alone (policy, baseline, entropy) and of their sum
  before the clip, and the share of updates the clip shrinks;
* the entropy per step against log |A| (a uniform policy);
* per layer, the gradient's RMS per element against RMSProp's ε, and the step the
  optimiser takes relative to its learning rate (Adam: about 1; RMSProp: ≪ 1 where
  ε ≫ the gradient, i.e. where ε, not the gradient's history, sets the step);
* the policy head's displacement against its gradient-sign consistency.

    python -m benchmarks.learning_diagnosis --game breakout --updates 40 \\
        [--set learner.optimizer=adam] [--checkpoint ckpt.pt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from engram import build
from engram.checkpoint import load_checkpoint
from engram.config import load_config
from learners.batch import stack_rollouts


def _terms(learner, batch):
    """The learner's own loss terms, weighted as in its update, and their V-trace targets."""
    s = learner.settings
    terms, _ = learner.loss_terms(batch)
    weighted = {
        "policy": terms.policy,
        "baseline": s.baseline_cost * terms.value,
        "entropy": learner.entropy_floor.cost(s.entropy_cost) * terms.entropy,  # the cost the update uses
    }
    return weighted, terms.targets, terms.values


def _grad_norms(agent, terms) -> dict[str, float]:
    params = [p for p in agent.parameters() if p.requires_grad]
    norms = {}
    for name, term in terms.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None])))
    return norms


def _layer_groups(agent) -> dict[str, list[torch.nn.Parameter]]:
    groups: dict[str, list] = {}
    for name, param in agent.named_parameters():
        groups.setdefault(name.rsplit(".", 1)[0], []).append(param)
    return groups


def diagnose(config, *, updates: int, checkpoint: str | None = None, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    learner = build.learner(config, make_agent())
    if checkpoint:
        learner.agent.load_state_dict(load_checkpoint(checkpoint)["learner"]["agent"])
    worker = RolloutWorker(0, build.env_factory(config, seed), make_agent, config.learner.unroll_length, seed)
    s = learner.settings
    head_start = learner.agent.policy_head.weight.detach().clone()
    sign_sum = torch.zeros_like(head_start)
    head_updates = 0
    records = []
    groups = _layer_groups(learner.agent)
    started = time.perf_counter()
    for update in range(updates):
        rollouts = []
        for _ in range(config.rollouts_per_update):
            weights = PublishedWeights(update, [learner.get_weights()])
            rollouts.append(wire.decode(worker.unroll(weights)))
        batch = stack_rollouts(rollouts, learner.agent)
        terms, targets, values = _terms(learner, batch)
        term_norms = _grad_norms(learner.agent, terms)
        learner.optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        raw_norm = float(torch.nn.utils.clip_grad_norm_(learner.agent.parameters(), s.grad_clip))
        clipped = [p.grad.detach().clone() if p.grad is not None else None for p in learner.agent.parameters()]
        before = {name: [p.detach().clone() for p in params] for name, params in groups.items()}
        head_grad = learner.agent.policy_head.weight.grad  # None for STRAW, whose policy is its plan
        if head_grad is not None:
            sign_sum += head_grad.sign()
            head_updates += 1
        learner.optimizer.step()
        learner.optimizer.zero_grad(set_to_none=True)
        layers = {}
        for name, params in groups.items():
            moved = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(params, before[name])])
            layers[name] = float(moved.mean()) / s.learning_rate
        grads_by_layer, grad_norm_by_layer = {}, {}
        index = 0
        for name, params in groups.items():
            chunk = [g for g in clipped[index:index + len(params)] if g is not None]
            index += len(params)
            flat = torch.cat([g.flatten() for g in chunk]) if chunk else torch.zeros(1)
            grads_by_layer[name] = float(flat.pow(2).mean().sqrt()) if chunk else 0.0
            # before the clip: what each layer contributes to the norm the clip reads
            grad_norm_by_layer[name] = float(flat.norm()) / min(1.0, s.grad_clip / max(raw_norm, 1e-12))
        entropy_cost = learner.entropy_floor.cost(s.entropy_cost)
        entropy = float(-terms["entropy"].detach() / entropy_cost / targets.vs.numel()) if entropy_cost else float("nan")
        records.append({
            "update": update,
            "advantage_mean": float(targets.pg_advantages.mean()),
            "advantage_std": float(targets.pg_advantages.std()),
            "value_error_rms": float((targets.vs - values).pow(2).mean().sqrt()),
            "reward_per_step": float(batch.rewards.clamp(-1, 1).mean()),
            "grad_norm_before_clip": raw_norm,
            "clip_factor": min(1.0, s.grad_clip / max(raw_norm, 1e-12)),
            "term_grad_norms": term_norms,
            "entropy_per_step": entropy,
            "grad_rms_by_layer": grads_by_layer,
            "grad_norm_by_layer": grad_norm_by_layer,
            "step_over_lr_by_layer": layers,
        })
    displacement = float((learner.agent.policy_head.weight.detach() - head_start).abs().mean())
    return {
        "benchmark": "learning_diagnosis",
        "config": {"game": config.env.atari.game if config.env.kind == "atari" else config.env.kind, "optimizer": s.optimizer, "learning_rate": s.learning_rate,
                   "rmsprop_eps": s.rmsprop_eps, "grad_clip": s.grad_clip, "batch": config.learner.batch_size,
                   "unroll": config.learner.unroll_length, "checkpoint": checkpoint},
        "log_num_actions": math.log(spec.num_actions),
        "updates": records,
        "policy_head": {
            "mean_abs_displacement": displacement,
            "random_walk_displacement": s.learning_rate * math.sqrt(updates) * math.sqrt(2 / math.pi),
            "gradient_sign_consistency": float(sign_sum.abs().mean() / head_updates) if head_updates else None,
        },
        "seconds": time.perf_counter() - started,
        "machine": platform.machine(),
    }


def summarise(result: dict) -> str:
    rows = result["updates"]

    def mean(key):
        return float(np.mean([r[key] for r in rows]))

    lines = [
        f"{result['config']}",
        f"advantage mean {mean('advantage_mean'):+.4f}  std {mean('advantage_std'):.4f}  "
        f"value error rms {mean('value_error_rms'):.4f}  clipped reward/step {mean('reward_per_step'):.4f}",
        f"grad norm before clip: mean {mean('grad_norm_before_clip'):.1f}  max "
        f"{max(r['grad_norm_before_clip'] for r in rows):.1f}  clip factor mean {mean('clip_factor'):.3f}  "
        f"share clipped {np.mean([r['clip_factor'] < 1 for r in rows]):.2f}",
        "term grad norms: " + "  ".join(
            f"{k} {np.mean([r['term_grad_norms'][k] for r in rows]):.2f}" for k in rows[0]["term_grad_norms"]),
        f"entropy/step {rows[-1]['entropy_per_step']:.3f} (uniform {result['log_num_actions']:.3f})",
        f"{'layer':28s} {'grad rms/elem':>14s} {'grad norm':>10s} {'step / lr':>10s}",
    ]
    later = rows[len(rows) // 2:]
    for layer in rows[0]["grad_rms_by_layer"]:
        grad = np.mean([r["grad_rms_by_layer"][layer] for r in later])
        norm = np.mean([r["grad_norm_by_layer"][layer] for r in later])
        step = np.mean([r["step_over_lr_by_layer"][layer] for r in later])
        lines.append(f"{layer:28s} {grad:14.2e} {norm:10.2f} {step:10.3f}")
    head = result["policy_head"]
    consistency = head["gradient_sign_consistency"]
    lines.append(
        f"policy head: moved {head['mean_abs_displacement']:.2e} per weight (a random walk of lr-sized steps: "
        f"{head['random_walk_displacement']:.2e}); gradient sign consistency "
        + (f"{consistency:.2f}" if consistency is not None else "n/a (the core's plan is the policy)")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/pong_lstm.yaml")
    parser.add_argument("--game", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    overrides = list(args.overrides) + ([f"env.atari.game={args.game}"] if args.game else [])
    config = load_config(args.config, overrides)
    torch.set_num_threads(1)
    result = diagnose(config, updates=args.updates, checkpoint=args.checkpoint, seed=args.seed)
    print(summarise(result))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
