"""The IMPALA learner: one V-trace update from a batch of rollouts.

``Learner.update(rollouts) -> metrics`` stacks the rollouts time-major, recomputes the
policy and values over the unroll (replaying the actors' recorded decisions), forms
V-trace targets, and takes one optimiser step with gradient clipping. A non-finite loss
or gradient skips the step, keeps the weights, and is counted. A step that leaves a
non-finite weight, or moves the weights by more than ``max_update_ratio`` of their norm,
is rolled back (weights and optimiser state) and counted the same way; after
``max_consecutive_skips`` such updates in a row :class:`DivergenceError` stops the run.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from actors.wire import Rollout
from agents.agent import Agent
from agents.core import State
from learners import losses
from learners.batch import Batch, stack_rollouts
from learners.bptt.unroll import PlainUnroll, Unroll
from learners.entropy_floor import EntropyFloor
from learners.errors import DivergenceError
from learners.exploration import mixed_monte_carlo_targets
from learners.torso_health import alive_fractions

log = logging.getLogger("engram.learner")


@dataclass(kw_only=True)
class LearnerSettings:
    """The hyper-parameters of the update. ``engram.config.LearnerConfig`` owns their defaults
    and documents each; :meth:`from_config` copies them by name, so no default lives here."""

    optimizer: str
    learning_rate: float
    learning_rate_schedule: str  # "constant" or "linear" (to 0 after decay_updates updates)
    rmsprop_alpha: float
    rmsprop_eps: float
    rmsprop_momentum: float
    adam_betas: tuple[float, float]
    adam_eps: float
    grad_clip: float
    discount: float
    reward_scale: float
    reward_clip: float | None
    baseline_cost: float
    entropy_cost: float
    entropy_floor: float | None  # nats per step; learners.entropy_floor raises the cost below it
    entropy_floor_rate: float
    advantage_normalization: str  # losses.ADVANTAGE_NORMALIZATIONS
    clip_rho_threshold: float
    clip_pg_rho_threshold: float
    max_update_ratio: float  # a step with ||Δθ|| > this × ||θ|| is rolled back
    max_consecutive_skips: int
    aux_loss_costs: dict[str, float]  # from the agent's config: the core's auxiliary losses
    mixed_monte_carlo: float  # from the exploration config: weight of the Monte-Carlo return in the value target
    decay_updates: int | None  # from the run's budget: updates until a linear schedule reaches 0

    @classmethod
    def from_config(
        cls, learner_config, *, aux_loss_costs: dict[str, float] | None = None, mixed_monte_carlo: float = 0.0,
        total_steps: int | None = None,
    ) -> "LearnerSettings":
        """From an ``engram.config.LearnerConfig``; the last three come from other sections (none by default).
        ``total_steps`` (``run.total_steps``) sets where a linear schedule reaches 0."""
        derived = {"aux_loss_costs", "mixed_monte_carlo", "decay_updates"}
        values = learner_config.model_dump(include={f.name for f in fields(cls)} - derived)
        values["adam_betas"] = tuple(values["adam_betas"])
        if values["learning_rate_schedule"] == "linear" and total_steps is None:
            raise ValueError("learner.learning_rate_schedule 'linear' needs the run's total_steps to decay over")
        steps_per_update = learner_config.unroll_length * learner_config.batch_size
        decay_updates = None if total_steps is None else max(1, math.ceil(total_steps / steps_per_update))
        return cls(**values, aux_loss_costs=dict(aux_loss_costs or {}), mixed_monte_carlo=mixed_monte_carlo,
                   decay_updates=decay_updates)

    def step_size(self, updates: int) -> float:
        """The learning rate of the update that follows ``updates`` batches (taken or skipped)."""
        if self.learning_rate_schedule == "constant":
            return self.learning_rate
        return self.learning_rate * max(0.0, 1.0 - updates / self.decay_updates)


def make_step_fn(agent: Agent):
    """Adapt ``agent.step`` to ``step_fn(state, x_t) -> (state, out_t)``.

    ``x_t`` holds ``obs``, ``prev_action``, ``prev_reward``, ``first`` and ``decisions``;
    ``out_t`` holds ``logits`` ``[B, A]``, ``value`` ``[B]`` and ``aux.<name>`` ``[B]``.
    """

    def step_fn(state: State, x: dict) -> tuple[State, dict[str, torch.Tensor]]:
        output, new_state = agent.step(
            x["obs"], x["prev_action"], x["prev_reward"], x["first"], state, replay=x.get("decisions") or None
        )
        out = {"logits": output.logits, "value": output.value}
        out.update({f"aux.{name}": value for name, value in output.aux_losses.items()})
        return new_state, out

    return step_fn


def step_inputs(batch: Batch) -> dict:
    """The per-step inputs of the unroll, time-major ``[T+1, B, ...]``."""
    return {
        "obs": batch.observations,
        "prev_action": batch.prev_actions,
        "prev_reward": batch.prev_rewards,
        "first": batch.firsts,
        "decisions": batch.decisions,
    }


class Learner:
    """Args:
        agent: the network being trained.
        settings: hyper-parameters.
        unroll: an :class:`Unroll`; plain BPTT by default.
        intrinsic_rewards: an optional :class:`learners.intrinsic.IntrinsicRewards` stream.
        device: where the agent and the batch live during the update.
        replicas: a :class:`learners.data_parallel.ReplicaSum` when this learner is one of N
            data-parallel replicas, each given its share of every batch; None for one learner.
    """

    def __init__(
        self, agent: Agent, settings: LearnerSettings, unroll: Unroll | None = None, intrinsic_rewards=None,
        device: str = "cpu", replicas=None,
    ):
        if replicas is not None and intrinsic_rewards is not None:
            raise ValueError(
                "data-parallel learners cannot share the exploration bonus's density model yet: "
                "use one learner with exploration.kind: pixelcnn"
            )
        self.replicas = replicas
        self.device = torch.device(device)
        self.agent = agent.to(self.device)
        self.intrinsic_rewards = intrinsic_rewards
        self.settings = settings
        self.unroll = unroll if unroll is not None else PlainUnroll()
        self.step_fn = make_step_fn(agent)
        self.optimizer = self._make_optimizer()
        self.advantage_normalizer = losses.AdvantageNormalizer(settings.advantage_normalization, replicas=replicas)
        self.entropy_floor = EntropyFloor(settings.entropy_floor, settings.entropy_floor_rate, agent.num_actions)
        self.updates = 0
        self.skipped_updates = 0
        self.consecutive_skips = 0
        self.last_skip_reason = ""

    def _make_optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        params = self.agent.parameters()
        if s.optimizer == "rmsprop":
            return torch.optim.RMSprop(
                params, lr=s.learning_rate, alpha=s.rmsprop_alpha, eps=s.rmsprop_eps, momentum=s.rmsprop_momentum
            )
        if s.optimizer == "adam":
            return torch.optim.Adam(params, lr=s.learning_rate, betas=s.adam_betas, eps=s.adam_eps)
        raise ValueError(f"unknown optimizer {s.optimizer!r}; expected 'rmsprop' or 'adam'")

    def get_weights(self) -> dict[str, torch.Tensor]:
        """CPU copies of the agent's weights, for the actors."""
        return {name: value.detach().to("cpu", copy=True) for name, value in self.agent.state_dict().items()}

    def update(self, rollouts: list[Rollout], learner_version: int | None = None) -> dict[str, float]:
        batch = stack_rollouts(rollouts, self.agent)
        if self.device.type != "cpu":
            batch = batch.to(self.device)
        return self.update_batch(batch, learner_version)

    def loss_terms(self, batch: Batch) -> tuple[losses.ImpalaLoss, dict[str, float]]:
        """Unroll the agent over ``batch``: the IMPALA loss, and the exploration bonus's statistics."""
        s = self.settings
        T = batch.unroll_length
        outputs, _ = self.unroll(self.step_fn, batch.initial_state, step_inputs(batch))
        logits, values = outputs["logits"], outputs["value"]  # [T+1, B, A], [T+1, B]

        rewards = batch.rewards * s.reward_scale
        if s.reward_clip is not None:
            rewards = rewards.clamp(-s.reward_clip, s.reward_clip)
        metrics = {}
        if self.intrinsic_rewards is not None:
            bonus = self.intrinsic_rewards(batch.observations.cpu()).to(rewards.device)  # [T, B], a separate stream
            rewards = rewards + bonus
            metrics["exploration/intrinsic_reward_mean"] = float(bonus.mean())
            metrics["exploration/intrinsic_return_per_unroll"] = float(bonus.sum(0).mean())
            metrics["exploration/extrinsic_reward_mean"] = float(batch.rewards.mean())
            for name, value in self.intrinsic_rewards.last_stats.items():
                if not isinstance(value, torch.Tensor):
                    metrics[f"exploration/{name}"] = float(value)
        discounts = s.discount * (~batch.firsts[1:]).float()  # 0 where the episode ended
        mixed = None
        if s.mixed_monte_carlo > 0:
            def mixed(vs):
                return mixed_monte_carlo_targets(vs, rewards, discounts, values[T].detach(), mix=s.mixed_monte_carlo)
        loss = losses.impala_loss(
            logits=logits[:T], values=values[:T], bootstrap_value=values[T],
            behaviour_logits=batch.behaviour_logits[:T], actions=batch.actions,
            rewards=rewards, discounts=discounts,
            baseline_cost=s.baseline_cost, entropy_cost=self.entropy_floor.cost(s.entropy_cost),
            clip_rho_threshold=s.clip_rho_threshold, clip_pg_rho_threshold=s.clip_pg_rho_threshold,
            aux={name[len("aux."):]: value[:T].sum() for name, value in outputs.items() if name.startswith("aux.")},
            aux_costs=s.aux_loss_costs, normalize_advantages=self.advantage_normalizer, value_targets=mixed,
        )
        return loss, metrics

    def update_batch(self, batch: Batch, learner_version: int | None = None) -> dict[str, float]:
        s = self.settings
        loss, metrics = self.loss_terms(batch)
        total, targets = loss.total, loss.targets
        for aux_name, aux_sum in loss.aux.items():
            metrics[f"loss/{aux_name}"] = float(aux_sum.detach())

        self.optimizer.zero_grad(set_to_none=True)
        grad_norm = float("nan")
        skip_reason = "" if torch.isfinite(total) else f"non-finite loss ({float(total.detach())})"
        if self.replicas is not None:  # every replica skips, or none does
            if self.replicas.values([1.0 if skip_reason else 0.0])[0] and not skip_reason:
                skip_reason = "non-finite loss on another replica's shard"
        if not skip_reason:
            with self.unroll.backward_context():
                total.backward()
            if self.replicas is not None:
                self.replicas.gradients(list(self.agent.parameters()))
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.agent.parameters(), s.grad_clip))
            if not math.isfinite(grad_norm):
                skip_reason = f"non-finite gradient norm ({grad_norm})"
        if not skip_reason:
            self._set_step_size()
            skip_reason = self._guarded_step()
        self._count(skip_reason)

        lag = [learner_version - v for v in batch.policy_versions] if learner_version is not None else [0]
        entropy_cost = self.entropy_floor.cost(s.entropy_cost)  # the cost this update used
        terms = [float(loss.policy.detach()), float(loss.value.detach()), float(loss.entropy.detach()), float(total.detach()),
                 float(loss.values.numel())]
        if self.replicas is not None:  # the whole batch's sums
            terms = self.replicas.values(terms)
        entropy_per_step = -terms[2] / terms[4]
        if not skip_reason:
            self.entropy_floor.observe(entropy_per_step)
        metrics.update(
            {
                "loss/policy": terms[0],
                "loss/value": terms[1],
                "loss/entropy": terms[2],
                "loss/total": terms[3],
                "learner/grad_norm": grad_norm,
                "learner/learning_rate": self.optimizer.param_groups[0]["lr"],
                "learner/skipped_updates": float(self.skipped_updates),
                "learner/policy_lag": sum(lag) / len(lag),
                "learner/mean_rho": float(targets.log_rhos.exp().mean()),
                "learner/entropy_per_step": entropy_per_step,
                "learner/entropy_cost": entropy_cost,
            }
        )
        metrics.update(self.unroll.metrics())
        metrics.update(alive_fractions(self.agent.torso, batch.observations[0]))
        return metrics

    def _set_step_size(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.step_size(self.updates + self.skipped_updates)

    def _guarded_step(self) -> str:
        """Take the optimiser step; roll it back and say why if it diverged, else return ""."""
        params = [p for p in self.agent.parameters() if p.grad is not None]
        before = [p.detach().clone() for p in params]
        optimizer_before = copy.deepcopy(self.optimizer.state_dict())
        self.optimizer.step()
        with torch.no_grad():
            old_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(b) for b in before]))
            new_norms = torch.stack([torch.linalg.vector_norm(p) for p in params])
            step_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p - b) for p, b in zip(params, before)]))
        if bool(torch.isfinite(new_norms).all()) and float(step_norm) <= self.settings.max_update_ratio * max(float(old_norm), 1e-8):
            return ""
        reason = (
            f"the step moved the weights by {float(step_norm):.3g} against a norm of {float(old_norm):.3g}"
            if bool(torch.isfinite(new_norms).all())
            else "the step left non-finite weights"
        )
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b)
        self.optimizer.load_state_dict(optimizer_before)
        return reason

    def _count(self, skip_reason: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if not skip_reason:
            self.updates += 1
            self.consecutive_skips = 0
            return
        self.skipped_updates += 1
        self.consecutive_skips += 1
        self.last_skip_reason = skip_reason
        log.warning("update skipped (%d in a row): %s", self.consecutive_skips, skip_reason)
        if self.consecutive_skips >= self.settings.max_consecutive_skips:
            s = self.settings
            raise DivergenceError(
                f"{self.consecutive_skips} updates in a row were skipped or rolled back (last: {skip_reason}). "
                f"The training diverges: the learning rate ({s.learning_rate:g}) is the usual cause; "
                f"lower learner.learning_rate, or check the rewards and learner.grad_clip ({s.grad_clip:g}). "
                "The weights are the last good ones; no checkpoint was written from a diverged step."
            )

    def exploration_telemetry(self, samples: bool) -> dict[str, np.ndarray]:
        """The exploration bonus's non-scalar telemetry (its scalars travel in the update's
        metrics): ``pseudo_counts`` of the last batch, and with ``samples`` a 4×4 grid of the
        density model's samples (uint8 ``[H, W]``). Empty without a bonus."""
        if self.intrinsic_rewards is None:
            return {}
        telemetry = {}
        counts = self.intrinsic_rewards.last_stats.get("pseudo_counts")
        if counts is not None:
            telemetry["pseudo_counts"] = counts.cpu().numpy()
        if samples:
            images = self.intrinsic_rewards.model.sample_images(16)  # [16, 1, size, size] uint8
            size = images.shape[-1]
            telemetry["samples"] = images.view(4, 4, size, size).permute(0, 2, 1, 3).reshape(4 * size, 4 * size).cpu().numpy()
        return telemetry

    def close(self) -> None:
        """Nothing to release in this process (a :class:`RemoteLearner` stops its actor)."""

    def state_dict(self) -> dict:
        state = {
            "agent": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
            "advantage_normalizer": self.advantage_normalizer.state_dict(),
            "entropy_floor": self.entropy_floor.state_dict(),
        }
        if self.intrinsic_rewards is not None:
            state["intrinsic_rewards"] = self.intrinsic_rewards.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])  # moves its state to the parameters' device
        self.updates = state["updates"]
        self.skipped_updates = state["skipped_updates"]
        self._set_step_size()  # the settings and the update count, not the saved state, set the step size
        if "advantage_normalizer" in state:  # absent from checkpoints written before it existed
            self.advantage_normalizer.load_state_dict(state["advantage_normalizer"])
        if "entropy_floor" in state:
            self.entropy_floor.load_state_dict(state["entropy_floor"])
        if self.intrinsic_rewards is not None:
            self.intrinsic_rewards.load_state_dict(state["intrinsic_rewards"])
