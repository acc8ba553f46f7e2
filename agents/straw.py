"""STRAW, STRAWe and STRAW-re cores (Vezhnevets et al. 2016, "Strategic Attentive Writer for
Learning Macro-Actions", arXiv 1606.04695).

STRAW keeps two plans as its only recurrent state:

* the action-plan ``A`` ``[R, T]``: column τ holds the action logits for τ steps ahead
  (R = |A| rows, plus one value row when ``value_row=True``);
* the commitment-plan ``c`` ``[T]``: ``c_{t−1}[τ]`` is the probability of re-planning at
  step t + τ.

One step t (paper §3, with z_t the features of the current input):

    g_t ~ Bernoulli(c_{t−1}[0])                       re-plan gate (straight-through)
    commit (g_t = 0):  A_t = ρ(A_{t−1}),  c_t = ρ(c_{t−1})
    re-plan (g_t = 1): ψ^A_t = f_ψ(z_t)                attention (g̃, log δ̃, log σ², log γ)
                       β_t = γ · A_{t−1} Fᵀ            attentive read, [R, K]
                       ξ_t = f([β_t, z_t])             two-layer ReLU perceptron
                       A_t = ρ(A_{t−1}) + (1/γ) · f^A(ξ_t) F   attentive write
                       ψ^c_t = f_c([ψ^A_t, ξ_t])       one-filter attention for c
                       c_t = sigmoid(b + e · F^c)      a spike where the next re-plan falls
    policy:            π(· | x_t) = softmax(A_t[:|A|, 0])

ρ (:func:`time_shift`) moves every column one step to the left and appends a column. Both
branches are computed for every row and mixed with the gate, so the straight-through
estimator g_t = sample + (c_{t−1}[0] − sg(c_{t−1}[0])) sends ∂L/∂g_t to c_{t−1}[0] while
the forward value is exactly the sampled bit (a commit step gives exactly ρ(A_{t−1})).

Variants (``variant=``):

* ``"straw"``: as above.
* ``"strawe"`` (STRAW-explorer): the planner sees a re-parametrised Gaussian latent
  z'_t = μ(z_t) + σ(z_t) · ε_t, ε_t ~ N(0, I), instead of z_t. KL(Q(z'|z_t) ‖ N(0, I)) is
  charged on re-planning steps only (the planner reads the latent only then).
* ``"straw_re"``: re-plans on every step (g_t ≡ 1); no gate, no commitment cost.

Loss terms returned per sequence (``CoreOutput.aux_losses``, each ``[B]``): ``"commitment"``
= c_t[0] (the learner multiplies it by λ; straw/strawe), ``"kl"`` = g_t · KL (strawe).

Off-policy replay (``CoreOutput.decisions``): ``"replan"`` ``[B]`` float 0/1 (straw, strawe)
and ``"latent_noise"`` ``[B, Z]`` (strawe). With ``replay`` holding them the core uses them
instead of sampling and recomputes the actor's step exactly; see :attr:`StrawCore.decision_shapes`.

Decisions taken here. The paper's full text could not be read in this project (only its
abstract and figure captions), so these are choices we stand by and test, not readings of it:

* By default there is no LSTM: the plans are the only recurrent state, as the abstract and
  Figure 1 describe the model (an internal plan updated from each observation). The LSTM is
  the baseline core (``agents/lstm_core.py``), not a part of STRAW. The input
  ``x_t = [torso(obs_t), one_hot(a_{t−1}), r_{t−1}]`` goes through one ReLU layer to give z_t.
  ``encoder="lstm"`` (our extension, not the paper's) makes z_t an LSTM cell's output instead,
  for partially observed tasks: the plan alone is R·T numbers written only by attention, a
  small memory (benchmarks/RESULTS.md, "STRAW on an LSTM encoder").
* Value function: the engram ``Agent`` computes V with a linear head on
  ``CoreOutput.features`` for every core, so STRAW's features are ``[z_t, vec(A_t)]``: the
  value head sees the current input and the whole plan. ``value_row=True`` also gives the plan
  an extra row that the attentive write fills like an action row (one reading of the A3C
  agent, kept as an option); default ``False`` (the state's ``plan`` is then ``[B, |A|, T]``).
* A plan is never exhausted: the last column of every new commitment plan is 1, so a plan
  followed to its end re-plans on the step after its last column was used (every T steps at
  the latest). ρ appends zeros to A and ones to c; with that column the appended zeros of A
  never reach the front.
* The initial commitment plan is ``[1, 0, …, 0]``, so the first step of an episode re-plans.
* e (``commitment_scale``) is a fixed constant, default 40: large enough that the written
  filter (F ≤ 1) lifts c to near 1 at its centre for any b training reaches, so the next
  re-plan falls at a sharp spike; away from it c = sigmoid(b). b is a learned scalar
  initialised to ``commitment_bias_init`` (0: before training one step in two re-plans,
  and the commitment cost teaches b to fall). With −5, which commits about 10 steps at a
  time from the start, STRAW did not learn the maze in 3M steps.
* ``isolate_commitment`` (default on): the commitment head reads the planner's features
  detached, so the straight-through and commitment-cost gradients, amplified by e, train
  only that head and b. Without it the shared planner learned far slower on the maze
  (benchmarks/RESULTS.md, "STRAW on the maze").
* Plan length and patch size default to T = 20, K = 10, the values a public
  re-implementation used; the configs set them (``agent.straw.plan_length``, ``patch_size``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from agents import straw_attention
from agents.core import CoreOutput, RecurrentCore, State
from agents.core_names import STRAW_VARIANTS

VARIANTS = STRAW_VARIANTS
ENCODERS = ("feedforward", "lstm")


def time_shift(plan: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """ρ: shift the last (time) axis one column to the left and append ``fill``.

    Args:
        plan: ``[..., T]``.
        fill: value of the appended column.

    Returns:
        ``[..., T]`` with ``out[..., τ] = plan[..., τ + 1]`` and ``out[..., T−1] = fill``.
    """
    appended = torch.full_like(plan[..., :1], fill)
    return torch.cat([plan[..., 1:], appended], dim=-1)


class StrawCore(RecurrentCore):
    """STRAW / STRAWe / STRAW-re as a :class:`RecurrentCore`. Every setting is the config's
    (``agent.straw``, where the defaults live).

    Args:
        input_size: size of the core input x_t.
        num_actions: |A|, the number of discrete actions.
        plan_length: T, the number of plan columns (steps planned ahead).
        patch_size: K, the number of filters read and written per re-plan.
        hidden_size: size of z_t and of the intermediate representation ξ_t.
        variant: ``"straw"``, ``"strawe"`` or ``"straw_re"``.
        latent_size: Z, size of STRAWe's Gaussian latent (ignored by the other variants).
        commitment_scale: e, the fixed height of the commitment spike before the sigmoid.
        commitment_bias_init: initial value of the learned scalar bias b.
        value_row: add a value row to the action-plan (rows = |A| + 1).
        plan_telemetry: also return the plans themselves as telemetry (for a plan image);
            the config leaves it off because they are ``R · T + T`` floats per env and step.
        isolate_commitment: the commitment head f_c reads ψ^A_t and ξ_t detached, so the
            gradients that reach c (the straight-through gate and the commitment cost)
            train f_c and b only and never the planner that writes A.
        latent_noise_init: STRAWe's σ at initialisation, the same for every input: the
            log-variance half of the latent layer starts with zero weights and bias 2 log σ₀.
            ``None`` keeps torch's initialisation, which gives σ ≈ 1: the planner then starts
            from noise as large as its signal.
        encoder: ``"feedforward"`` (z_t = ReLU(W x_t), the paper's) or ``"lstm"`` (z_t is an LSTM
            cell's output over x_t; the cell's state joins the core's state).
        plan_bound: ``None`` (the paper's unbounded plan) or a bound b > 0: a re-planned plan is
            squashed to b · tanh(A_t / b), so no entry exceeds ±b. Re-planning reads the plan and
            writes on top of it; where that loop's learned gain exceeds one, an unbounded plan
            compounds step by step within an episode until the logits overflow the loss
            (benchmarks/RESULTS.md, "a plan that runs away"). Commit steps shift a plan that
            is already bounded, so they stay exact.
        normalise_read: layer-normalise the read patch β before f (off: the paper's form).
            Re-planning reads the plan and writes on top of it, a loop whose gain is learned;
            with many rows (one per character in the text task) and Adam at 2e-3 it runs away
            within a window to logits of 10⁴. Normalised, the read no longer grows with the
            plan, so a write is bounded by f's own scale.

    State (batch first):
        ``plan`` ``[B, R, T]`` A_t; ``commitment`` ``[B, T]`` c_t;
        ``steps_since_replan`` ``[B]`` float, the age of the current macro-action; with the
        LSTM encoder also ``encoder_hidden`` and ``encoder_cell`` ``[B, H]``.

    Telemetry (detached, per step): ``replan`` ``[B]``; ``replan_probability`` ``[B]``
    c_{t−1}[0]; ``macro_length`` ``[B]`` the length of the macro-action that the re-plan at
    this step ended (0 where no re-plan or nothing ended); ``attention_centre`` and
    ``attention_stride`` ``[B]`` (g and δ, in columns); ``kl`` ``[B]`` (strawe); with
    ``plan_telemetry=True`` also ``plan`` ``[B, R, T]`` and ``commitment`` ``[B, T]``
    (slice env 0 for a plan image).
    """

    def __init__(
        self,
        input_size: int,
        num_actions: int,
        *,
        plan_length: int,
        patch_size: int,
        hidden_size: int,
        variant: str,
        latent_size: int,
        commitment_scale: float,
        commitment_bias_init: float,
        value_row: bool,
        plan_telemetry: bool,
        isolate_commitment: bool,
        normalise_read: bool,
        plan_bound: float | None,
        encoder: str,
        latent_noise_init: float | None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if plan_length < 2:
            raise ValueError(f"plan_length must be at least 2, got {plan_length}")
        if not 1 <= patch_size <= plan_length:
            raise ValueError(
                f"patch_size must be in [1, plan_length={plan_length}], got {patch_size}"
            )
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if plan_bound is not None and not plan_bound > 0:
            raise ValueError(f"plan_bound must be positive or None, got {plan_bound}")
        self.plan_bound = plan_bound
        self.num_actions = num_actions
        self.plan_length = plan_length
        self.patch_size = patch_size
        self.variant = variant
        self.latent_size = latent_size
        self.commitment_scale = commitment_scale
        self.plan_telemetry = plan_telemetry
        self.isolate_commitment = isolate_commitment
        self.plan_rows = num_actions + (1 if value_row else 0)  # R

        self.recurrent_encoder = encoder == "lstm"
        if self.recurrent_encoder:
            self.encoder = nn.LSTMCell(input_size, hidden_size)  # (x_t, state) -> z_t
        else:
            self.encoder = nn.Linear(input_size, hidden_size)  # x_t -> z_t
        planner_input = hidden_size
        if variant == "strawe":
            self.latent = nn.Linear(hidden_size, 2 * latent_size)  # z_t -> (μ, log σ²)
            if latent_noise_init is not None:
                if not latent_noise_init > 0:
                    raise ValueError(f"latent_noise_init must be positive or None, got {latent_noise_init}")
                with torch.no_grad():
                    self.latent.weight[latent_size:].zero_()
                    self.latent.bias[latent_size:].fill_(2.0 * math.log(latent_noise_init))
            planner_input = latent_size
        rows, patch = self.plan_rows, patch_size
        self.action_attention = nn.Linear(  # f_ψ
            planner_input, straw_attention.NUM_ATTENTION_PARAMETERS
        )
        self.intermediate = nn.Sequential(  # f
            nn.Linear(rows * patch + planner_input, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
        )
        self.read_norm = nn.LayerNorm(rows * patch) if normalise_read else nn.Identity()
        self.patch_writer = nn.Linear(hidden_size, rows * patch)  # f^A
        # f_c emits (g̃, log δ̃, log σ²) of the one commitment filter (δ̃ unused at K = 1).
        self.commitment_attention = nn.Linear(
            hidden_size + straw_attention.NUM_ATTENTION_PARAMETERS, 3
        )
        self.commitment_bias = nn.Parameter(torch.tensor(float(commitment_bias_init)))  # b
        self.output_size = hidden_size + rows * plan_length

    @property
    def decision_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sequence shape (without B) of each decision this variant records and replays."""
        shapes: dict[str, tuple[int, ...]] = {}
        if self.variant != "straw_re":
            shapes["replan"] = ()
        if self.variant == "strawe":
            shapes["latent_noise"] = (self.latent_size,)
        return shapes

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        """A_0 = 0, c_0 = [1, 0, …, 0] (re-plan on the first step), in the parameters' dtype."""
        options = dict(device=device, dtype=self.commitment_bias.dtype)
        plan = torch.zeros(batch_size, self.plan_rows, self.plan_length, **options)
        commitment = torch.zeros(batch_size, self.plan_length, **options)
        commitment[:, 0] = 1.0
        steps = torch.zeros(batch_size, **options)
        state = {"plan": plan, "commitment": commitment, "steps_since_replan": steps}
        if self.recurrent_encoder:
            state["encoder_hidden"] = torch.zeros(batch_size, self.encoder.hidden_size, **options)
            state["encoder_cell"] = torch.zeros(batch_size, self.encoder.hidden_size, **options)
        return state

    def forward(self, features, state, replay=None):
        """One step: ``features`` ``[B, input_size]`` -> (``CoreOutput``, new state)."""
        batch_size = features.shape[0]
        previous_plan = state["plan"]  # A_{t−1}  [B, R, T]
        previous_commitment = state["commitment"]  # c_{t−1}  [B, T]
        decisions: dict[str, torch.Tensor] = {}
        aux_losses: dict[str, torch.Tensor] = {}
        telemetry: dict[str, torch.Tensor] = {}

        encoder_state: State = {}
        if self.recurrent_encoder:
            z, cell = self.encoder(features, (state["encoder_hidden"], state["encoder_cell"]))  # z_t  [B, H]
            encoder_state = {"encoder_hidden": z, "encoder_cell": cell}
        else:
            z = F.relu(self.encoder(features))  # z_t  [B, H]

        # Re-plan gate g_t ~ Bernoulli(c_{t−1}[0]) with a straight-through gradient.
        replan_probability = previous_commitment[:, 0]
        if self.variant == "straw_re":
            gate = torch.ones_like(replan_probability)
        else:
            if replay is None:
                if not bool(torch.isfinite(replan_probability).all()):
                    raise FloatingPointError(
                        "STRAW's commitment plan is not finite: its weights diverged (lower the learning rate)"
                    )
                sample = torch.bernoulli(replan_probability.detach())
            else:
                sample = _replayed(replay, "replan", (batch_size,)).to(replan_probability.dtype)
            decisions["replan"] = sample
            # Parenthesised so that the forward value is exactly `sample`.
            gate = sample + (replan_probability - replan_probability.detach())

        planner_input = z
        if self.variant == "strawe":
            mean, log_variance = self.latent(z).chunk(2, dim=1)
            if replay is None:
                noise = torch.randn_like(mean)  # ε_t
            else:
                noise = _replayed(replay, "latent_noise", tuple(mean.shape)).to(mean.dtype)
            decisions["latent_noise"] = noise
            planner_input = mean + (0.5 * log_variance).exp() * noise  # z'_t
            kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).sum(dim=1)
            aux_losses["kl"] = gate.detach() * kl  # charged on re-planning steps
            telemetry["kl"] = kl.detach()

        # Re-plan proposal, computed for every row and selected by the gate.
        attention_parameters = self.action_attention(planner_input)  # ψ^A_t  [B, 4]
        attention = straw_attention.gaussian_filterbank(
            attention_parameters, self.plan_length, self.patch_size
        )
        read_patch = straw_attention.read(previous_plan, attention)  # β_t  [B, R, K]
        intermediate = self.intermediate(
            torch.cat([self.read_norm(read_patch.flatten(1)), planner_input], dim=1)
        )  # ξ_t  [B, H]
        written_patch = self.patch_writer(intermediate).view(
            batch_size, self.plan_rows, self.patch_size
        )  # f^A(ξ_t)  [B, R, K]
        plan_update = straw_attention.write(written_patch, attention)  # [B, R, T]
        commitment_input = torch.cat([attention_parameters, intermediate], dim=1)
        if self.isolate_commitment:
            commitment_input = commitment_input.detach()
        commitment_parameters = self.commitment_attention(commitment_input)  # ψ^c_t  [B, 3]
        commitment_filter = straw_attention.gaussian_filterbank(
            commitment_parameters, self.plan_length, 1
        ).filters[:, 0]  # F^c  [B, T]
        new_commitment = torch.sigmoid(
            self.commitment_bias + self.commitment_scale * commitment_filter
        )
        # A plan written now has T columns, used at steps t … t+T−1; the gate of step t+T reads
        # column T−1 of this commitment plan after T−1 shifts, so that column forces the re-plan.
        new_commitment = torch.cat([new_commitment[:, :-1], torch.ones_like(new_commitment[:, -1:])], dim=1)

        # A_t = ρ(A_{t−1}) + g_t · write;  c_t = g_t · c_new + (1 − g_t) · ρ(c_{t−1}).
        shifted = time_shift(previous_plan)
        if self.plan_bound is None:
            plan = shifted + gate[:, None, None] * plan_update
        else:  # bound the re-planned plan; a committed one is kept as shifted
            replanned_plan = self.plan_bound * torch.tanh((shifted + plan_update) / self.plan_bound)
            plan = shifted + gate[:, None, None] * (replanned_plan - shifted)
        commitment = gate[:, None] * new_commitment + (1.0 - gate[:, None]) * time_shift(
            previous_commitment, fill=1.0
        )

        replanned = gate.detach() > 0.5
        previous_steps = state["steps_since_replan"]
        steps = torch.where(replanned, torch.ones_like(previous_steps), previous_steps + 1.0)

        if self.variant != "straw_re":
            aux_losses["commitment"] = commitment[:, 0]
        telemetry.update(
            replan=replanned.float(),
            replan_probability=replan_probability.detach(),
            macro_length=torch.where(replanned, previous_steps, torch.zeros_like(previous_steps)),
            attention_centre=attention.centre.detach(),
            attention_stride=attention.stride.detach(),
        )
        if self.plan_telemetry:
            telemetry.update(plan=plan.detach(), commitment=commitment.detach())
        output = CoreOutput(
            features=torch.cat([z, plan.flatten(1)], dim=1),
            policy_logits=plan[:, : self.num_actions, 0],
            decisions=decisions,
            aux_losses=aux_losses,
            telemetry=telemetry,
        )
        new_state = {"plan": plan, "commitment": commitment, "steps_since_replan": steps, **encoder_state}
        return output, new_state


def _replayed(replay: dict[str, torch.Tensor], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if name not in replay:
        raise KeyError(
            f"replay is missing the decision {name!r} (has {sorted(replay)}); pass the "
            "CoreOutput.decisions recorded by the actor for this step"
        )
    value = replay[name]
    if tuple(value.shape) != shape:
        raise ValueError(f"replayed {name!r} has shape {tuple(value.shape)}, expected {shape}")
    return value
