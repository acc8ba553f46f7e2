"""Pseudo-count exploration bonus from a Gated PixelCNN (pure torch, no Ray).

Papers:
* Bellemare et al. 2016, "Unifying Count-Based Exploration and Intrinsic Motivation"
  (arXiv 1606.01868): pseudo-count from a density model, bonus, mixed Monte-Carlo return.
* Ostrovski et al. 2017, "Count-Based Exploration with Neural Density Models"
  (arXiv 1703.01310): the PixelCNN density model, prediction gain, its decay, the
  first-order approximation.

The recipe (one frame ``x``, the model has been trained on ``n`` frames)::

    x  = last frame of the stack, 84×84 -> 42×42 (2×2 mean), 256 -> L = 8 levels (3 bits)
    ρ_n(x)   = PixelCNN probability of x before training on x
    ρ'_n(x)  = probability after one optimiser step on -log ρ(x)        ("recoding prob.")
    PG_n(x)  = log ρ'_n(x) - log ρ_n(x)                                  (prediction gain)
    N̂_n(x)   = (exp(c · n^{-1/2} · max(PG_n(x), 0)) - 1)^{-1}   (Ostrovski et al., with their
                                                                  c·n^{-1/2} decay of PG)
    r⁺(x)    = β · (N̂_n(x) + 0.01)^{-1/2}                       (Bellemare et al.)

Prediction gain, two ways (``PseudoCountConfig.pg``):

* ``exact``: evaluate ``log ρ(x)``, take the optimiser step on ``x``, evaluate ``log ρ'(x)``
  (two forward passes and one backward per frame).
* ``first_order``: ``PG ≈ ⟨∇ log ρ(x), Δθ⟩`` with ``Δθ`` the step the optimiser would take on
  ``x`` alone (Ostrovski et al. 2017: ``PG ≈ η‖∇ log ρ(x)‖²`` for SGD). For the adaptive optimisers we
  use the preconditioned form, keeping only the part of ``Δθ`` that ``x``'s gradient ``g``
  causes (momentum from older frames is left out, so the estimate is never negative):

    SGD      PG ≈ η Σ g²
    RMSProp  PG ≈ η Σ g² / (sqrt(v') + ε),             v' = α v + (1 - α) g²
    Adam     PG ≈ η (1 - β₁)/(1 - β₁^t) Σ g² / (sqrt(v'/(1 - β₂^t)) + ε), v' = β₂ v + (1 - β₂) g²

  where ``v`` is the optimiser's second-moment state before the step and ``v'`` the state the
  step on ``x`` alone would leave (torch's update rules, so the estimate matches the exact
  gain to first order in η).

How the model is trained (``PseudoCountConfig.update``):

* ``per_frame`` (the papers'): one optimiser step per frame, frames in the order they were
  collected (time-major: all envs at t = 0, then t = 1, ...). Faithful, but sequential:
  batch-size-1 passes, see ``benchmarks/pixelcnn.py`` for frames/s.
* ``per_batch`` (``first_order`` only): per-sample gradients of the whole ``[T·B]`` batch at the
  current parameters (``torch.func``: ``functional_call`` + ``vmap`` + ``grad``) give each
  frame's first-order gain as if it were the one trained on, then one optimiser step on the
  batch's mean loss. The model takes ``T·B`` times fewer steps than per-frame training; with
  an adaptive optimiser a step's size does not grow with the batch, so the model learns
  slower per frame (raise ``lr`` to compensate). Prediction gains are then relative to a
  model that lags by up to one batch.

The count ``n`` (``frames_seen``) counts every frame trained on, in either mode.

Notes from measurement (tests/test_exploration.py, benchmarks/pixelcnn.py):

* The loss is the summed negative log-likelihood of the image (1764 sub-pixels), the
  quantity PG is defined on. Adaptive optimisers do not care about its scale; plain SGD needs
  a learning rate around 1e-5 (1e-2 diverges).
* With Adam the exact gain also contains the step that momentum from *earlier* frames takes
  (about 9× the first-order estimate after brief training); the two still rank frames
  alike (Spearman 1.0 in the tests). RMSProp without momentum and SGD match to first order.
* The count ``N̂`` of a frame shown over and over grows about linearly in ``n`` once the model
  has fitted it (SGD, η = 3e-5: log-log slope ≈ 1 between n = 50 and 150); with constant-step
  adaptive optimisers the early phase is not monotone, which is one reason for ``max(PG, 0)``.
* On a CPU the per-sample gradients of ``per_batch`` (vmap) cost more than per-frame
  first-order updates; ``per_batch`` is meant for a GPU learner.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from agents.pixelcnn import GatedPixelCNN
from learners.pseudo_count_settings import PseudoCountConfig  # noqa: F401  (its settings, torch-free)


def preprocess_frames(frames: torch.Tensor, *, image_size: int = 42, levels: int = 8) -> torch.Tensor:
    """Stacked frames ``[N, C, H, W]`` uint8 -> levels ``[N, 1, image_size, image_size]`` int64.

    Uses the last frame of the stack, area-downsamples it (2×2 mean for 84 -> 42) and
    quantises 0..255 into ``levels`` equal bins.
    """
    if frames.dtype != torch.uint8 or frames.dim() != 4:
        raise ValueError(f"frames must be uint8 [N, C, H, W], got {frames.dtype} {tuple(frames.shape)}")
    last = frames[:, -1:].float()  # [N, 1, H, W]
    small = F.adaptive_avg_pool2d(last, image_size)
    return (small * (levels / 256.0)).floor().clamp_(0, levels - 1).long()


def pseudo_counts(prediction_gain: torch.Tensor, frames_seen: torch.Tensor, c: float) -> torch.Tensor:
    """N̂ = (exp(c · n^{-1/2} · max(PG, 0)) - 1)^{-1}; ``inf`` where PG <= 0. Shapes broadcast."""
    decayed = c * frames_seen.to(prediction_gain.dtype).rsqrt() * prediction_gain.clamp(min=0.0)
    return torch.expm1(decayed).reciprocal()


def exploration_bonus(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """r⁺ = β (N̂ + 0.01)^{-1/2} (Bellemare et al. 2016); 0 where N̂ is infinite."""
    return beta * (counts + 0.01).rsqrt()


def mixed_monte_carlo_targets(
    targets: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    bootstrap_value: torch.Tensor,
    *,
    mix: float = 0.1,
) -> torch.Tensor:
    """Mixed Monte-Carlo targets ``(1 - mix) · targets + mix · G_t`` (Bellemare et al. 2016).

    ``G_t = r_t + γ_t G_{t+1}``, ``G_T = bootstrap_value`` is the return of the unroll
    (pass zeros as ``bootstrap_value`` where the episode ended at the unroll's end; ``γ_t = 0``
    at a terminal step cuts the sum there).

    Args:
        targets: ``[T, B]`` the learner's value targets (e.g. V-trace ``v_s``).
        rewards: ``[T, B]`` rewards including the exploration bonus.
        discounts: ``[T, B]`` γ · (1 - done).
        bootstrap_value: ``[B]`` value after the last step.
        mix: weight of the Monte-Carlo return (0.1 in Bellemare et al. 2016).
    Returns:
        ``[T, B]`` mixed targets.
    """
    if not (targets.shape == rewards.shape == discounts.shape) or bootstrap_value.shape != targets.shape[1:]:
        raise ValueError(
            f"shapes must be targets/rewards/discounts [T, B], bootstrap [B]; got {tuple(targets.shape)}, "
            f"{tuple(rewards.shape)}, {tuple(discounts.shape)}, {tuple(bootstrap_value.shape)}"
        )
    returns = torch.empty_like(rewards)
    running = bootstrap_value
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + discounts[t] * running
        returns[t] = running
    return (1.0 - mix) * targets + mix * returns


class PseudoCountBonus:
    """A PixelCNN trained online on the learner's frames and the bonus it yields.

    Usage in the learner::

        bonus, stats = exploration.bonus(batch.observations)   # [T, B], dict
        rewards = rewards + bonus
    """

    def __init__(self, config: PseudoCountConfig = PseudoCountConfig(), *, device: str | torch.device = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.model = GatedPixelCNN(
            1,
            config.levels,
            layers=config.layers,
            hidden_channels=config.hidden_channels,
            kernel_size=config.kernel_size,
            first_kernel_size=config.first_kernel_size,
            head_channels=config.head_channels,
        ).to(self.device)
        self.optimizer = self._make_optimizer()
        self.frames_seen = 0  # n: frames the model has been trained on

    # ----------------------------------------------------------------- public API
    def bonus(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Train on ``frames`` and return their bonus.

        Args:
            frames: ``[T, B, C, H, W]`` uint8 stacked frames, time-major.
        Returns:
            ``bonus [T, B]`` float32 and a stats dict: ``bonus_mean``, ``bonus_max``,
            ``prediction_gain_mean``, ``nonpositive_gain_fraction``, ``bits_per_dim`` (mean over
            these frames, before training on them), ``frames_seen`` (floats) and
            ``pseudo_counts`` (1-D tensor of the finite N̂, for a histogram).
        """
        if frames.dim() != 5:
            raise ValueError(f"frames must be [T, B, C, H, W], got {tuple(frames.shape)}")
        time_steps, batch = frames.shape[:2]
        levels = self.preprocess(frames.flatten(0, 1))  # [T·B, 1, S, S], time-major order
        counted_before = self.frames_seen
        log_prob_before, gain = self.train_and_measure(levels)
        frame_index = torch.arange(1, levels.shape[0] + 1, device=self.device, dtype=torch.float64)
        counts = pseudo_counts(gain.double(), counted_before + frame_index, self.config.c)
        bonus = exploration_bonus(counts, self.config.beta).float().view(time_steps, batch)
        dims = levels[0].numel()
        stats = {
            "bonus_mean": float(bonus.mean()),
            "bonus_max": float(bonus.max()),
            "prediction_gain_mean": float(gain.mean()),
            "nonpositive_gain_fraction": float((gain <= 0).float().mean()),
            "bits_per_dim": float(-log_prob_before.mean() / (dims * math.log(2.0))),
            "frames_seen": float(self.frames_seen),
            "pseudo_counts": counts[torch.isfinite(counts)].float().cpu(),
        }
        return bonus.cpu(), stats

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` uint8 -> ``[N, 1, S, S]`` int64 levels on the model's device."""
        return preprocess_frames(
            frames.to(self.device), image_size=self.config.image_size, levels=self.config.levels
        )

    def train_and_measure(self, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on ``levels`` ``[N, 1, S, S]`` (in order) -> ``(log ρ(x) [N], PG(x) [N])``.

        ``log ρ(x)`` is each frame's log-likelihood before the step that trains on it.
        """
        if self.config.update == "per_batch":
            return self._train_per_batch(levels)
        log_probs, gains = [], []
        for index in range(levels.shape[0]):
            log_prob, gain = self._train_one(levels[index : index + 1])
            log_probs.append(log_prob)
            gains.append(gain)
        return torch.cat(log_probs), torch.cat(gains)

    def prediction_gains(self, levels: torch.Tensor, pg: Literal["exact", "first_order"]) -> torch.Tensor:
        """Each frame's PG ``[N]`` from the *current* state, without changing it.

        Exact: step on frame i, measure, restore parameters and optimiser state. For
        diagnostics and tests (ranking ``exact`` against ``first_order``).
        """
        if pg == "first_order":
            grads, _ = self._per_sample_gradients(levels)
            with torch.no_grad():
                return self._first_order_gains(grads)
        saved_model = {k: v.clone() for k, v in self.model.state_dict().items()}
        saved_optimizer = _clone_tree(self.optimizer.state_dict())
        gains = []
        for index in range(levels.shape[0]):
            x = levels[index : index + 1]
            log_before = self._step_on(x)
            with torch.no_grad():
                gains.append(self.model.log_prob(x) - log_before)
            self.model.load_state_dict(saved_model)
            self.optimizer.load_state_dict(_clone_tree(saved_optimizer))
        return torch.cat(gains)

    @torch.no_grad()
    def bits_per_dim(self, levels: torch.Tensor) -> float:
        """Mean bits/dim of ``levels`` ``[N, 1, S, S]`` under the current model."""
        return float(self.model.bits_per_dim(levels.to(self.device)).mean())

    def sample_images(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``[n, 1, S, S]`` uint8 in 0..255, for a TensorBoard image grid."""
        size = self.config.image_size
        levels = self.model.sample(n, shape=(size, size), generator=generator)
        return (levels * 255 // (self.config.levels - 1)).to(torch.uint8).cpu()

    def state_dict(self) -> dict:
        """Model, optimiser and the count ``n``; tensors are copies (torch's optimiser
        ``load_state_dict`` would otherwise share state tensors between two instances)."""
        return _clone_tree(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "frames_seen": self.frames_seen,
            }
        )

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(_clone_tree(state["optimizer"]))
        self.frames_seen = int(state["frames_seen"])

    # ----------------------------------------------------------------- training
    def _make_optimizer(self) -> torch.optim.Optimizer:
        config, params = self.config, self.model.parameters()
        # foreach: one multi-tensor kernel per update rule instead of a loop over parameters
        # (the batch-size-1 steps of per-frame training are dominated by such overheads).
        if config.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=config.lr, alpha=config.rmsprop_alpha, eps=config.eps, foreach=True)
        if config.optimizer == "adam":
            return torch.optim.Adam(params, lr=config.lr, eps=config.eps, foreach=True)
        return torch.optim.SGD(params, lr=config.lr, foreach=True)

    def _step_on(self, x: torch.Tensor) -> torch.Tensor:
        """One optimiser step on -log ρ(x); returns log ρ(x) before the step ``[N]`` (detached)."""
        log_prob = self.model.log_prob(x)
        self.optimizer.zero_grad(set_to_none=True)
        (-log_prob.mean()).backward()
        self.optimizer.step()
        return log_prob.detach()

    def _train_one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame mode, one frame ``[1, 1, S, S]`` -> (log ρ(x) [1], PG [1])."""
        if self.config.pg == "exact":
            log_before = self._step_on(x)
            with torch.no_grad():
                log_after = self.model.log_prob(x)  # ρ'(x), the recoding probability
            gain = log_after - log_before
        else:
            log_prob = self.model.log_prob(x)
            self.optimizer.zero_grad(set_to_none=True)
            (-log_prob.sum()).backward()
            with torch.no_grad():
                # the gradient of the step is g = ∇ log ρ(x) up to sign; the gain uses g².
                grads = {name: p.grad[None] for name, p in self.model.named_parameters() if p.grad is not None}
                gain = self._first_order_gains(grads)
            self.optimizer.step()
            log_before = log_prob.detach()
        self.frames_seen += 1
        return log_before, gain

    def _train_per_batch(self, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-batch mode: per-sample gradients give the gains and, averaged, the step."""
        grads, log_before = self._per_sample_gradients(levels)
        with torch.no_grad():
            gains = self._first_order_gains(grads)
            for name, parameter in self.model.named_parameters():
                parameter.grad = -grads[name].mean(0)  # ∇ of the mean loss -log ρ, no second pass
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.frames_seen += levels.shape[0]
        return log_before, gains

    def _per_sample_gradients(self, levels: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``({name: ∇_θ log ρ(x_i) [N, *param.shape]}, log ρ(x_i) [N])`` via torch.func."""
        params = {name: p.detach() for name, p in self.model.named_parameters()}
        buffers = {name: b for name, b in self.model.named_buffers()}

        def log_prob_one(parameters, x):  # x [1, S, S] -> (scalar, scalar aux)
            log_prob = functional_call(self.model, (parameters, buffers), (x[None],))[0]
            return log_prob, log_prob.detach()

        # functional_call routes model(x) to forward, which for GatedPixelCNN is log_prob.
        return vmap(grad(log_prob_one, has_aux=True), in_dims=(None, 0))(params, levels)

    def _first_order_gains(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """PG_i ≈ ⟨g_i, Δθ(g_i)⟩ with the optimiser's preconditioner; ``grads`` ``{name: [N, ...]}``."""
        config = self.config
        total = None
        for name, parameter in self.model.named_parameters():
            g = grads.get(name)
            if g is None:
                continue
            g2 = g.square()
            state = self.optimizer.state.get(parameter, {})
            if config.optimizer == "sgd":
                term = config.lr * g2
            elif config.optimizer == "rmsprop":
                v = state.get("square_avg", torch.zeros_like(parameter))
                v_next = config.rmsprop_alpha * v + (1 - config.rmsprop_alpha) * g2  # v'
                term = config.lr * g2 / (v_next.sqrt() + config.eps)
            else:  # adam
                beta1, beta2 = self.optimizer.defaults["betas"]
                step = float(state.get("step", 0)) + 1  # t of the step on x
                v = state.get("exp_avg_sq", torch.zeros_like(parameter))
                v_next = beta2 * v + (1 - beta2) * g2
                denominator = (v_next / (1 - beta2**step)).sqrt() + config.eps
                term = config.lr * (1 - beta1) / (1 - beta1**step) * g2 / denominator
            summed = term.flatten(1).sum(1)  # [N]
            total = summed if total is None else total + summed
        return total


def _clone_tree(tree):
    """Deep copy of a (nested) state dict, cloning tensors."""
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if isinstance(tree, dict):
        return {key: _clone_tree(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_clone_tree(value) for value in tree]
    return tree
