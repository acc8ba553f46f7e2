"""The typed experiment configuration, loaded from YAML with ``--set`` overrides.

Every section is a frozen pydantic model that forbids unknown keys: a typo fails with
its dotted path and the closest valid key, a bad value with the path, the problem and
the value given. Derived values are properties; nothing changes a config once loaded.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.core_names import CORES, MEMORY_CORES, STRAW_VARIANTS
from envs.atari import AtariSettings, check_game
from learners.bptt.budget import MAX_UNITS, MODES as CHECKPOINTED_MODES, parse_bytes
from learners.pseudo_count_settings import PseudoCountConfig


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and the problem."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- run -------------------------------------------------------------------------------
class RunConfig(Section):
    kind: Literal["rl", "memory_task", "density", "text"] = Field(
        "rl",
        description="rl: actors + V-trace learner on Ray; memory_task: supervised training on one process; "
        "density: a PixelCNN density model of a small image set, on one process; text: next-character "
        "prediction with agent.core, on one process.",
    )
    name: str = Field("run", description="Run folder name under `runs_root` (`runs/<name>/`).")
    seed: int = Field(0, description="The one seed every other seed is derived from.")
    total_steps: int = Field(10_000_000, gt=0, description="Agent steps to learn from (frames = steps × frameskip).")
    runs_root: str = Field("runs", description="Where run folders are created when --run-dir is not given.")


# --- env -------------------------------------------------------------------------------
_MACHADO = AtariSettings()  # the protocol's defaults live in envs/atari.py


class AtariConfig(Section):
    """Machado et al. 2018 defaults (``envs.atari.AtariSettings``)."""

    game: str = Field("pong", description="ale-py ROM id, e.g. pong, ms_pacman, montezuma_revenge.")
    sticky_action_probability: float = Field(
        _MACHADO.sticky_action_probability, ge=0.0, le=1.0, description="Repeat-previous-action probability."
    )
    full_action_space: bool = Field(_MACHADO.full_action_space, description="Use all 18 actions.")
    frameskip: int = Field(_MACHADO.frameskip, ge=1, description="ALE frames per agent step.")
    frame_stack: int = Field(_MACHADO.frame_stack, ge=1, description="Frames stacked in each observation.")
    max_episode_frames: int = Field(
        _MACHADO.max_episode_frames, gt=0, description="Episode cap in ALE frames (30 minutes of play)."
    )
    num_threads: int = Field(0, ge=0, description="ale-py C++ threads per actor (0 = one per env, capped by cores).")

    @field_validator("game")
    @classmethod
    def _known_game(cls, game: str) -> str:
        return check_game(game)


class MemoryCueConfig(Section):
    delay: int = Field(5, ge=0, description="Blank steps between the cue and the query.")
    num_cues: int = Field(2, ge=2, description="Number of distinct cues (= actions).")


class MazeConfig(Section):
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of envs.maze.MazeVectorEnv.")

    @field_validator("options")
    @classmethod
    def _known_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        import inspect

        from envs.maze import MazeVectorEnv

        valid = sorted(set(inspect.signature(MazeVectorEnv).parameters) - {"num_envs", "seed"})
        for key in options:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"unknown maze option {key!r}{hint}; valid options: {', '.join(valid)}")
        return options


class PopgymConfig(Section):
    """POPGym (Morad et al. 2023); see envs/popgym_suite.py."""

    id: str = Field(
        "RepeatPreviousEasy",
        description="A POPGym environment: its class name (RepeatPreviousMedium, AutoencodeHard, ...) or id "
        "(popgym-RepeatPreviousMedium-v0).",
    )
    action_bins: int = Field(5, ge=2, description="Values a continuous action (the Pendulum variants) is discretised into.")

    @field_validator("id")
    @classmethod
    def _known_id(cls, env_id: str) -> str:
        from envs.popgym_suite import check_popgym_id

        check_popgym_id(env_id)
        return env_id


class BsuiteMemoryConfig(Section):
    """bsuite's memory_len / memory_size task (Osband et al. 2020); see envs/bsuite_memory.py."""

    memory_length: int = Field(10, ge=1, description="N: steps between the context and the query (memory_len).")
    num_bits: int = Field(1, ge=1, description="Context bits, one of which is asked for (memory_size).")


class EnvConfig(Section):
    kind: Literal["atari", "memory_cue", "maze", "popgym", "bsuite_memory"] = Field(
        "atari", description="Which environment family."
    )
    atari: AtariConfig = AtariConfig()
    memory_cue: MemoryCueConfig = MemoryCueConfig()
    maze: MazeConfig = MazeConfig()
    popgym: PopgymConfig = PopgymConfig()
    bsuite_memory: BsuiteMemoryConfig = BsuiteMemoryConfig()

    @property
    def frames_per_step(self) -> int:
        return self.atari.frameskip if self.kind == "atari" else 1

    def factory_options(self) -> dict[str, Any]:
        if self.kind == "atari":
            return self.atari.model_dump()
        if self.kind == "memory_cue":
            return self.memory_cue.model_dump()
        if self.kind == "popgym":
            return self.popgym.model_dump()
        if self.kind == "bsuite_memory":
            return self.bsuite_memory.model_dump()
        return dict(self.maze.options)


# --- agent -----------------------------------------------------------------------------
class LSTMConfig(Section):
    hidden_size: int = Field(256, gt=0, description="LSTM units.")


class StrawConfig(Section):
    """STRAW / STRAWe / STRAW-re (Vezhnevets et al. 2016); see agents/straw.py."""

    plan_length: int = Field(20, ge=2, description="T: columns of the action plan (steps planned ahead).")
    patch_size: int = Field(10, ge=1, description="K: Gaussian filters in the attentive read/write patch.")
    hidden_size: int = Field(256, gt=0, description="Planner feature size.")
    latent_size: int = Field(64, gt=0, description="STRAWe's Gaussian latent size.")
    commitment_scale: float = Field(40.0, gt=0, description="e: scale of the commitment spike.")
    commitment_bias_init: float = Field(
        0.0, description="b at initialisation (sets the starting re-plan rate: 0 gives about 1 in 2)."
    )
    value_row: bool = Field(False, description="Add the paper's extra value row to the plan.")
    plan_telemetry: bool = Field(False, description="Send plans to the learner for the TensorBoard plan image.")
    isolate_commitment: bool = Field(
        True, description="The commitment head reads the planner's features detached: its gradients never reach the planner."
    )
    normalise_read: bool = Field(
        False, description="Layer-normalise the patch read from the plan before the planner uses it (off: the "
        "paper's form); keeps the read-write loop from running away with many plan rows (the text task)."
    )
    plan_bound: float | None = Field(
        None, gt=0, description="Squash each re-planned action plan to ±this (b · tanh(A / b)); null: the paper's "
        "unbounded plan. Stops a read-write loop with a gain above one from running the plan away (benchmarks/RESULTS.md)."
    )
    encoder: Literal["feedforward", "lstm"] = Field(
        "feedforward", description="What makes the planner's features z_t from the input: one ReLU layer (the "
        "paper's; the plans are the only memory) or an LSTM cell (ours: memory beyond the plan, for partially "
        "observed tasks)."
    )
    latent_noise_init: float | None = Field(
        None, gt=0, description="STRAWe's latent σ at initialisation, for every input (null: torch's init, σ ≈ 1, "
        "noise as large as the planner's signal from the start)."
    )
    commitment_cost: float = Field(1e-3, ge=0, description="λ: weight of the commitment cost c_t[0].")
    kl_cost: float = Field(1e-4, ge=0, description="α: weight of STRAWe's KL, charged on re-planning steps.")

    def core_options(self) -> dict[str, Any]:
        return self.model_dump(exclude={"commitment_cost", "kl_cost"})


class MemoryConfig(Section):
    """SAM / SDNC and the dense baselines DAM / NTM (Rae et al. 2016); see agents/sam/."""

    hidden_size: int = Field(256, gt=0, description="LSTM controller units.")
    memory_slots: int = Field(4096, ge=1, description="N: memory rows per sequence.")
    word_size: int = Field(32, gt=0, description="W: width of a memory row.")
    num_heads: int = Field(4, gt=0, description="Read/write heads.")
    top_k: int = Field(4, gt=0, description="K: rows per sparse read (SAM, SDNC).")
    index: Literal["exact", "faiss"] = Field("exact", description="Top-K search: exact scan, or a faiss HNSW index.")
    link_size: int = Field(8, gt=0, description="K_L: sparse temporal links per row (SDNC only).")
    time_code: int = Field(
        0, ge=0, multiple_of=2, description="Size of a sinusoidal code of the step since the episode began that the "
        "SAM / SDNC interface reads beside the controller's output, so reads can find a row by how long ago it was "
        "written (our extension; 0 = the paper's SAM). See agents/sam/step_code.py."
    )

    def core_options(self, core: str) -> dict[str, Any]:
        options = self.model_dump(exclude={"link_size"})
        if core == "sdnc":
            options["link_size"] = self.link_size
        if core in ("dam", "ntm"):
            for sparse_only in ("index", "top_k", "time_code"):
                options.pop(sparse_only)
        return options


class AgentConfig(Section):
    torso: Literal["auto", "shallow", "deep", "mlp"] = Field(
        "auto", description="Encoder: IMPALA shallow / deep conv for frames, mlp for vectors; auto picks by shape."
    )
    torso_size: int = Field(256, gt=0, description="Encoder output features.")
    center_frames: Literal["none", "mean", "background"] = Field(
        "background", description="What image torsos subtract from each frame: its background (median) colour, so "
        "Pong's grey field reads 0 and cannot drift the first conv layer's channels to death while Breakout's black "
        "is left alone; its mean (the older Pong fix, which holds Breakout back); or nothing (RLlib's input, which "
        "kills Pong's first layer). true/false mean 'mean'/'none'. See agents/torsos.py and benchmarks/RESULTS.md."
    )

    @field_validator("center_frames", mode="before")
    @classmethod
    def _centring_from_bool(cls, value):
        if isinstance(value, bool):  # configs and checkpoints written before the choice of three
            return "mean" if value else "none"
        return value
    init: Literal["orthogonal", "torch"] = Field(
        "torch", description="Torso and head weights: orthogonal (gain √2, policy 0.01, value 1) or torch's defaults."
    )
    core: Literal[CORES] = Field(
        "lstm", description="Recurrent core: LSTM, a STRAW variant, or a memory core."
    )
    feature_norm: bool = Field(
        False, description="LayerNorm the core's features before the policy and value heads. Without it a SAM "
        "core's features grew 18-fold within a few hundred thousand steps on Repeat Previous: the logits followed, "
        "the value head's gradient took over the shared core, and the policy collapsed (benchmarks/RESULTS.md, 'A norm before "
        "the heads')."
    )
    lstm: LSTMConfig = LSTMConfig()
    straw: StrawConfig = StrawConfig()
    memory: MemoryConfig = MemoryConfig()

    @model_validator(mode="after")
    def _time_code_needs_a_sparse_core(self) -> "AgentConfig":
        if self.memory.time_code and self.core in ("dam", "ntm"):
            raise ValueError(f"agent.memory.time_code applies to sam and sdnc, not {self.core}: leave it 0")
        return self

    def core_options(self) -> dict[str, Any]:
        if self.core in STRAW_VARIANTS:
            return self.straw.core_options()
        if self.core in MEMORY_CORES:
            return self.memory.core_options(self.core)
        return getattr(self, self.core).model_dump()

    def aux_loss_costs(self) -> dict[str, float]:
        """Weights of the auxiliary losses the core reports (see CoreOutput.aux_losses)."""
        if self.core in STRAW_VARIANTS:
            return {"commitment": self.straw.commitment_cost, "kl": self.straw.kl_cost}
        return {}


# --- resources -------------------------------------------------------------------------
class ResourcesConfig(Section):
    """Where the work runs: rollout actors, their envs, and the learner's device."""

    num_actors: int = Field(2, gt=0, description="Rollout actors (Ray processes).")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs Ray reserves for each actor.")
    envs_per_actor: int = Field(32, gt=0, description="Environments each actor steps (its vector width).")
    actor_torch_threads: int = Field(1, gt=0, description="Torch intra-op threads per actor.")
    max_actor_restarts: int = Field(100, ge=0, description="Actor failures tolerated before the run stops.")
    learner_device: str = Field("cpu", description="Torch device of the learner: cpu, cuda, cuda:1, ...")
    learner_gpus: float = Field(0.0, ge=0, description="GPUs Ray reserves for the learner (for each one, with num_learners).")
    learner_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for a learner that runs as a Ray actor.")
    num_learners: int = Field(
        1, gt=0, description="Data-parallel learner replicas (Ray actors), each on its share of every batch, "
        "gradients summed with one all-reduce (gloo on CPU, NCCL on GPU).",
    )
    learner_placement: Literal["auto", "driver", "actor"] = Field(
        "auto", description="auto: a Ray actor when learner_gpus > 0, else in the driver process."
    )
    learner_torch_threads: int = Field(1, gt=0, description="Torch intra-op threads of the learner.")
    worker_niceness: int = Field(
        0, ge=0, le=19, description="CPU niceness of the rollout actors when `engram train` starts its own Ray: 0 runs "
        "them at the learner's priority (Ray's default, 15, starves them behind the learner on a busy machine).",
    )
    wait_for_resources_s: float = Field(
        60.0, ge=0, description="How long `engram train` waits for the Ray cluster to free or add what the actors "
        "reserve before it gives up (a request no node could ever hold fails at once)."
    )

    @field_validator("learner_device")
    @classmethod
    def _device(cls, device: str) -> str:
        # the spelling only (torch stays unimported here); engram/preflight.py checks the device is there
        if not re.fullmatch(r"(cpu|cuda|mps|xpu)(:\d+)?", device):
            raise ValueError(f"not a torch device: {device!r} (expected cpu, cuda, cuda:<index>, mps or xpu)")
        return device

    @model_validator(mode="after")
    def _replicas_are_actors(self) -> "ResourcesConfig":
        if self.num_learners > 1 and self.learner_placement == "driver":
            raise ValueError(f"num_learners={self.num_learners} runs the learners as Ray actors: "
                             "learner_placement must be auto or actor")
        return self

    @property
    def learner_is_actor(self) -> bool:
        return (self.learner_placement == "actor" or self.num_learners > 1
                or (self.learner_placement == "auto" and self.learner_gpus > 0))


# --- learner ---------------------------------------------------------------------------
class BPTTConfig(Section):
    """Memory-efficient BPTT (Gruslys et al. 2016): see learners/bptt_plan.py."""

    mode: str = Field(
        "full", description="full: plain BPTT; hsm / ism / msm: DP-optimal checkpointing under memory_budget."
    )
    memory_budget: str | None = Field(
        None, description="Bytes the unroll may hold for backward, e.g. '2GiB' (needed unless mode is full)."
    )
    plan_units: int = Field(
        MAX_UNITS, ge=16,
        description="The most memory units the planner's dynamic programme divides the budget into (its work "
        "grows as T² × units): a plan holds at most units − 1 internal states, so raise it for unrolls of "
        "thousands of steps whose budget holds more than that.",
    )
    measure_every: int = Field(
        100, gt=0,
        description="Meter the bytes held for backward (bptt/measured_peak_bytes) on the first update and every "
        "N-th after; the meter runs Python on every saved tensor, so 1 slows each update a little.",
    )

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in ("full", *CHECKPOINTED_MODES):
            raise ValueError(f"unknown BPTT mode {mode!r}; expected full or one of {', '.join(CHECKPOINTED_MODES)}")
        return mode

    @field_validator("memory_budget")
    @classmethod
    def _parse(cls, budget: str | None) -> str | None:
        if budget is not None:

            parse_bytes(budget)
        return budget

    @property
    def budget_bytes(self) -> int | None:
        """``memory_budget`` in bytes, parsed here once (None for full BPTT)."""
        if self.memory_budget is None:
            return None

        return parse_bytes(self.memory_budget)

    @model_validator(mode="after")
    def _budget_given(self) -> "BPTTConfig":
        if self.mode != "full" and self.memory_budget is None:
            raise ValueError(f"learner.bptt.mode={self.mode} needs learner.bptt.memory_budget, e.g. '2GiB'")
        return self


class LearnerConfig(Section):
    unroll_length: int = Field(20, gt=0, description="T: agent steps per rollout and per learner sequence.")
    batch_size: int = Field(32, gt=0, description="B: sequences per update (a multiple of resources.envs_per_actor).")
    optimizer: Literal["rmsprop", "adam"] = Field(
        "adam", description="Optimiser. Adam learns Atari here; RMSProp at IMPALA's settings does not "
        "(benchmarks/RESULTS.md, 'Learning on Atari')."
    )
    learning_rate: float = Field(
        6e-4, gt=0,
        description="Optimiser step size: Adam at 6e-4 is RLlib's IMPALA rate. On frames not centred, it (or "
        "RMSProp with a small ε) kills most of Pong's first-layer conv channels within a few hundred updates "
        "(watch torso/alive/* in TensorBoard); agent.center_frames=background prevents that.",
    )
    learning_rate_schedule: Literal["constant", "linear"] = Field(
        "constant", description="constant, or linear: the step size falls in a straight line from learning_rate at "
        "the first update to 0 at run.total_steps (IMPALA's and TorchBeast's schedule; a run's curve then depends on "
        "its budget)."
    )
    rmsprop_alpha: float = Field(0.99, gt=0, lt=1, description="RMSProp decay.")
    rmsprop_eps: float = Field(
        0.01, gt=0,
        description="RMSProp ε, added to the gradient's RMS (torch's form). IMPALA's 0.01 exceeds the FC and LSTM "
        "gradients' RMS here, so those layers barely learn; a small ε instead lets torch's RMSProp (whose running "
        "average starts at 0) take steps of about 10× the learning rate at first, which killed the torso on Pong.",
    )
    rmsprop_momentum: float = Field(0.0, ge=0, lt=1, description="RMSProp momentum.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's moment decays (β₁, β₂), each in [0, 1).")
    adam_eps: float = Field(1e-8, gt=0, description="Adam epsilon.")
    grad_clip: float = Field(40.0, gt=0, description="Global gradient-norm clip.")
    discount: float = Field(0.99, ge=0, le=1, description="γ.")
    reward_scale: float = Field(
        1.0, gt=0, description="Multiply training rewards by this before the clip. POPGym pays ±1/(scored steps) a "
        "step, so its value targets are hundredths and any drift of the shared features swamps them; a scale of the "
        "scored steps puts them at ±1. Scores and logged returns stay on the environment's own scale."
    )
    reward_clip: float | None = Field(1.0, gt=0, description="Clip training rewards to ±this; null = raw rewards.")
    baseline_cost: float = Field(0.5, ge=0, description="Weight of the value loss.")
    entropy_cost: float = Field(0.01, ge=0, description="Weight of the entropy regulariser.")
    entropy_floor: float | None = Field(
        None, gt=0, description="Nats per step; null = off. While the batch's mean policy entropy is below it, the "
        "entropy cost grows geometrically (never below entropy_cost), so a policy that collapses onto one action is "
        "pushed back out (learners/entropy_floor.py). Must lie below ln(number of actions)."
    )
    entropy_floor_rate: float = Field(
        0.1, gt=0, description="How fast the floor raises the cost: its log grows by this per update and nat of shortfall."
    )
    advantage_normalization: Literal["none", "batch", "running"] = Field(
        "none",
        description="Scale of the policy-gradient advantages: none (IMPALA's), batch ((A − mean) / std over the "
        "batch, PPO's) or running (A / running RMS). On Pong the raw advantages are small enough that the value "
        "and entropy terms drown the policy term (benchmarks/RESULTS.md, 'Learning on Atari').",
    )
    clip_rho_threshold: float = Field(1.0, gt=0, description="V-trace ρ̄.")
    clip_pg_rho_threshold: float = Field(1.0, gt=0, description="V-trace ρ̄ for the policy-gradient advantage.")
    max_update_ratio: float = Field(
        1.0, gt=0, description="An optimiser step that moves the weights by more than this share of their norm is rolled back."
    )
    max_consecutive_skips: int = Field(
        20, ge=1, description="The run stops after this many updates in a row were skipped or rolled back."
    )
    bptt: BPTTConfig = BPTTConfig()

    @field_validator("adam_betas")
    @classmethod
    def _betas_are_decays(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"each of Adam's betas must lie in [0, 1), got {list(betas)}")
        return betas

    @model_validator(mode="after")
    def _a_floor_needs_a_cost(self) -> "LearnerConfig":
        if self.entropy_floor is not None and self.entropy_cost == 0:
            raise ValueError("learner.entropy_floor scales learner.entropy_cost, which is 0: give entropy_cost > 0")
        return self


# --- exploration ----------------------------------------------------------------------
class ExplorationConfig(Section):
    """Pseudo-count bonus from a Gated PixelCNN (Ostrovski et al. 2017); see learners/exploration.py."""

    kind: Literal["none", "pixelcnn"] = Field("none", description="none, or the PixelCNN pseudo-count bonus.")
    # the bonus's own settings: defaults and rules live in learners/pseudo_count_settings.py
    beta: float = Field(PseudoCountConfig.beta, gt=0, description="β: bonus scale, r⁺ = β (N̂ + 0.01)^-1/2.")
    c: float = Field(PseudoCountConfig.c, gt=0, description="c of the prediction-gain decay c·n^-1/2.")
    pg: Literal["exact", "first_order"] = Field(
        PseudoCountConfig.pg, description="Prediction gain: exact, or first-order."
    )
    update: Literal["per_frame", "per_batch"] = Field(
        PseudoCountConfig.update,
        description="Density-model steps: one per frame (the papers') or one per batch (first_order).",
    )
    optimizer: Literal["rmsprop", "adam", "sgd"] = Field(PseudoCountConfig.optimizer, description="Density-model optimiser.")
    lr: float = Field(PseudoCountConfig.lr, gt=0, description="Density-model learning rate (constant).")
    hidden_channels: int = Field(PseudoCountConfig.hidden_channels, gt=0, description="PixelCNN feature maps.")
    layers: int = Field(
        PseudoCountConfig.layers, ge=1, description="Gated layers (the first is the 7×7 mask-A layer)."
    )
    frame_fraction: float = Field(
        1.0, gt=0, le=1, description="Fraction of transitions scored; 1 = every frame. How the rest are paid: subsample."
    )
    subsample: Literal["random", "hold"] = Field(
        "random", description="Below frame_fraction 1, which transitions pay a bonus: random (each with probability "
        "frame_fraction, its bonus scaled by the inverse; the others 0) or hold (a few steps of each env's unroll "
        "are scored and every step takes the nearest one's bonus, unscaled). See learners/intrinsic.py."
    )
    mixed_monte_carlo: float = Field(0.0, ge=0, le=1, description="Weight of the Monte-Carlo return in value targets.")
    sample_interval_s: float = Field(600.0, gt=0, description="Seconds between TensorBoard grids of model samples.")

    @model_validator(mode="after")
    def _bonus_rules(self) -> "ExplorationConfig":
        self.pseudo_count_config()  # the bonus's own checks (e.g. per_batch needs first_order), at load time
        return self

    def pseudo_count_config(self) -> PseudoCountConfig:
        return PseudoCountConfig(
            beta=self.beta, c=self.c, pg=self.pg, update=self.update, optimizer=self.optimizer, lr=self.lr,
            hidden_channels=self.hidden_channels, layers=self.layers,
        )


# --- supervised memory tasks ----------------------------------------------------------
class MemoryTaskConfig(Section):
    """The algorithmic tasks of Rae et al. 2016 §4.2, trained when ``run.kind: memory_task``."""

    task: Literal["copy", "associative_recall", "priority_sort"] = Field("copy", description="Which task.")
    bits: int = Field(6, gt=0, description="Bits per item.")
    item_length: int = Field(3, gt=0, description="Vectors per item (associative recall only).")
    updates: int = Field(10_000, gt=0, description="Optimiser updates.")
    batch_size: int = Field(8, gt=0, description="Sequences per update (the paper: 8).")
    learning_rate: float = Field(1e-4, gt=0, description="RMSProp step size (the paper: 1e-5).")
    curriculum_start: int = Field(1, ge=1, description="Initial curriculum level h.")
    curriculum_maximum: int = Field(1024, ge=1, description="Largest h.")
    curriculum_threshold: float = Field(0.05, gt=0, description="Loss per scored bit under which h doubles.")
    curriculum_patience: int = Field(50, gt=0, description="Updates the loss must stay under the threshold.")
    log_every: int = Field(50, gt=0, description="Updates between records.")
    time_limit_minutes: float | None = Field(
        None, gt=0, description="Stop after this much training time even if `updates` is not reached."
    )
    evaluate_levels: list[int] = Field(
        [], description="Levels at which generalisation is measured on fresh sequences (eval/solved_L<n>)."
    )
    evaluate_every: int = Field(500, gt=0, description="Updates between generalisation evaluations.")
    evaluate_sequences: int = Field(64, gt=0, description="Sequences per evaluated level.")

    def task_options(self) -> dict[str, Any]:
        options = {"bits": self.bits}
        if self.task == "associative_recall":
            options["item_length"] = self.item_length
        return options


# --- density models of images -----------------------------------------------------------
class DensityConfig(Section):
    """A PixelCNN trained as a density model of a small image set, when ``run.kind: density``
    (van den Oord et al. 2016, 1606.05328; learners/density_trainer.py)."""

    dataset: Literal["digits"] = Field(
        "digits", description="digits: scikit-learn's 8×8 handwritten digits (ships with the package; needs scikit-learn)."
    )
    levels: int = Field(17, ge=2, le=17, description="Values per pixel after quantisation (17 keeps all of the digits').")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each class held out for the test bits/dim.")
    model: Literal["gated", "plain"] = Field(
        "gated", description="gated: the Gated PixelCNN; plain: the original ungated PixelCNN with its blind spot."
    )
    conditioning: Literal["none", "class", "autoencoder"] = Field(
        "class",
        description="none: p(x); class: p(x | class one-hot) through every gate; autoencoder: p(x | f(x)) with a "
        "convolutional encoder f trained end to end.",
    )
    code_size: int = Field(8, gt=0, description="The autoencoder's code size.")
    layers: int = Field(5, ge=1, description="Layers (the first is the 7×7 mask-A layer).")
    hidden_channels: int = Field(32, gt=0, description="Feature maps per layer (per stack for the gated model).")
    kernel_size: int = Field(3, ge=3, description="Kernel of the layers after the first (odd).")
    first_kernel_size: int = Field(7, ge=3, description="Kernel of the first layer (odd).")
    updates: int = Field(3000, gt=0, description="Adam steps.")
    batch_size: int = Field(64, gt=0, description="Images per step.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size.")
    evaluate_every: int = Field(250, gt=0, description="Steps between test-set evaluations.")
    samples_per_class: int = Field(8, gt=0, description="Samples drawn per class for TensorBoard at the end.")

    @field_validator("kernel_size", "first_kernel_size")
    @classmethod
    def _odd(cls, size: int) -> int:
        if size % 2 != 1:
            raise ValueError(f"must be odd, got {size}")
        return size

    @model_validator(mode="after")
    def _plain_is_unconditional(self) -> "DensityConfig":
        if self.model == "plain" and self.conditioning != "none":
            raise ValueError(
                f"density.model=plain is unconditional; set density.conditioning=none (got {self.conditioning}), "
                "or use density.model=gated"
            )
        return self


# --- next-character prediction --------------------------------------------------------
class TextConfig(Section):
    """Next-character prediction with ``agent.core`` (STRAW's text experiment, Vezhnevets et al.
    2016 §4.3), when ``run.kind: text`` (learners/text_trainer.py). The core's own settings
    (``agent.lstm``, ``agent.straw`` and its commitment and KL costs) apply."""

    source: str = Field(
        "python_docs",
        description="A UTF-8 text file, or python_docs: the Python reference's topic texts that ship with Python "
        "(pydoc_data, about 465k characters).",
    )
    test_fraction: float = Field(0.1, gt=0, lt=1, description="The tail of the text held out for the test bits/char.")
    updates: int = Field(3000, gt=0, description="Adam steps, one window each.")
    batch_size: int = Field(32, gt=0, description="B: contiguous streams trained side by side.")
    unroll_length: int = Field(100, gt=0, description="T: characters per window (truncated BPTT; state carried over).")
    learning_rate: float = Field(2e-3, gt=0, description="Adam step size.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping by global norm.")
    evaluate_every: int = Field(500, gt=0, description="Updates between scores of the held-out text.")
    evaluate_batch_size: int = Field(16, gt=0, description="Streams the held-out text is read in.")


# --- telemetry and checkpoints ---------------------------------------------------------
class TelemetryConfig(Section):
    log_interval_s: float = Field(5.0, gt=0, description="Seconds between TensorBoard / metrics.jsonl records.")
    console: bool = Field(True, description="Show the live progress line.")
    picture_interval_s: float = Field(
        60.0, gt=0, description="Seconds between drawn TensorBoard pictures (a memory core's access: memory/access)."
    )


class CheckpointConfig(Section):
    interval_s: float = Field(600.0, gt=0, description="Seconds between checkpoints (one more is written at the end).")
    keep: int = Field(3, gt=0, description="Checkpoints kept; older ones are deleted.")
    keep_every_steps: int | None = Field(
        None, gt=0, description="Also keep, for good, the first checkpoint at or past each multiple of this many "
        "steps (agent steps for engram train; the count in a checkpoint's name): milestones to probe or "
        "evaluate a run at after it ends. Unset: none."
    )


class Config(Section):
    run: RunConfig = RunConfig()
    env: EnvConfig = EnvConfig()
    agent: AgentConfig = AgentConfig()
    resources: ResourcesConfig = ResourcesConfig()
    learner: LearnerConfig = LearnerConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    memory_task: MemoryTaskConfig = MemoryTaskConfig()
    density: DensityConfig = DensityConfig()
    text: TextConfig = TextConfig()
    exploration: ExplorationConfig = ExplorationConfig()

    @model_validator(mode="after")
    def _batch_fits_actors(self) -> "Config":
        if self.learner.batch_size % self.resources.envs_per_actor:
            raise ValueError(
                f"learner.batch_size ({self.learner.batch_size}) must be a multiple of resources.envs_per_actor "
                f"({self.resources.envs_per_actor}): each update takes whole rollouts"
            )
        return self

    @model_validator(mode="after")
    def _batch_splits_over_learners(self) -> "Config":
        learners = self.resources.num_learners
        if learners > 1 and self.rollouts_per_update % learners:
            raise ValueError(
                f"resources.num_learners ({learners}) must divide the rollouts per update "
                f"({self.rollouts_per_update} = learner.batch_size / resources.envs_per_actor): "
                "each replica takes whole rollouts"
            )
        if learners > 1 and self.exploration.kind != "none":
            raise ValueError("exploration.kind=pixelcnn trains one density model: use resources.num_learners: 1")
        return self

    @model_validator(mode="after")
    def _exploration_needs_frames(self) -> "Config":
        if self.exploration.kind == "pixelcnn" and self.env.kind != "atari":
            raise ValueError("exploration.kind=pixelcnn needs image frames: use it with env.kind=atari")
        return self

    @model_validator(mode="after")
    def _memory_tasks_train_with_full_bptt(self) -> "Config":
        if self.run.kind == "memory_task" and self.learner.bptt.mode != "full":
            raise ValueError(
                f"learner.bptt.mode={self.learner.bptt.mode} applies to run.kind=rl; memory tasks train with full "
                "BPTT (a short controller per step, and SAM's undo log keeps its memory O(T·K·W))"
            )
        return self

    @property
    def rollouts_per_update(self) -> int:
        return self.learner.batch_size // self.resources.envs_per_actor


# --- loading ---------------------------------------------------------------------------
def _model_at(path: tuple) -> type[BaseModel] | None:
    model: Any = Config
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _describe(error: dict) -> str:
    path = tuple(part for part in error["loc"] if isinstance(part, str))
    dotted = ".".join(path)
    if error["type"] == "extra_forbidden":
        parent = _model_at(path[:-1])
        valid = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(path[-1], valid, n=1)
        hint = f" (did you mean '{'.'.join((*path[:-1], close[0]))}'?)" if close else ""
        return f"unknown key '{dotted}'{hint}; valid keys here: {', '.join(valid)}"
    message = error["msg"].removeprefix("Value error, ")
    where = f"'{dotted}'" if dotted else "the config"
    if "input" in error and error["type"] not in ("value_error",) and not isinstance(error["input"], dict):
        return f"{where}: {message} (got {error['input']!r})"
    return f"{where}: {message}"


def apply_override(tree: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override; the value is parsed as YAML (``3``, ``true``, ``[1, 2]``)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. learner.learning_rate=3e-4")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[: depth + 1])}' is a value, not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: the value {raw!r} is not valid YAML ({error.problem})") from None


def from_dict(tree: dict) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as error:
        problems = "\n  ".join(_describe(e) for e in error.errors())
        raise ConfigError(f"invalid config:\n  {problems}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if tree is None:
        raise ConfigError(
            f"{path} is empty: it would start the default Pong run unasked; "
            "write the settings you want, or start from configs/pong_lstm.yaml"
        )
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for assignment in overrides:
        apply_override(tree, assignment)
    return from_dict(tree)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
