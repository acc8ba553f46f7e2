"""The plan picture of a STRAW core (``straw/plan``): what it intends to do, how long it
commits to it, and where it re-planned.

Drawn from one environment's slice of a rollout (core telemetry ``plan`` ``[T+1, B, R, P]``,
``commitment`` ``[T+1, B, P]``, ``replan`` ``[T+1, B]``; the rollout's ``actions``
``[T, B]``), Vezhnevets et al. 2016 §2:

* **the newest action plan** A_t: one row per action, named; plan time τ = 0 … P−1 (steps
  ahead) across; each column's softmax over the actions, the policy that step τ would follow
  if the agent kept the plan;
* **the commitment plan** c_t, its own row in another colour map: c_t[τ] is the probability
  of re-planning τ steps ahead (column 0 is read by the next step's gate);
* **over the rollout**: at each step the policy the plan gave (column 0 of A_t), the action
  taken (white dot) and the steps where the agent re-planned (red marks along the top).

A value row of A (``value_row``), when present, is left out. The figure is rendered to RGB
``[H, W, 3]`` uint8 for TensorBoard, at the memory picture's width.
"""

from __future__ import annotations

import numpy as np

WIDTH_INCHES = 4.6


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Softmax over axis 0 (the actions) of ``[A, ...]`` logits."""
    shifted = logits - logits.max(axis=0, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=0, keepdims=True)


def draw(
    telemetry: dict[str, np.ndarray],
    actions: np.ndarray,
    action_names: list[str],
    *,
    env: int = 0,
    title: str = "",
) -> np.ndarray:
    """RGB ``[H, W, 3]`` uint8 of env ``env``'s plans over a rollout (see the module doc)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    num_actions = len(action_names)
    plans = telemetry["plan"][:, env, :num_actions]  # [T+1, A, P]
    T = actions.shape[0]
    newest = softmax_rows(plans[-1])  # [A, P]
    executed = softmax_rows(plans[:T, :, 0].T)  # [A, T]: the policy of each step of the rollout
    commitment = telemetry["commitment"][-1, env] if "commitment" in telemetry else None  # [P]
    replanned = np.flatnonzero(telemetry["replan"][:T, env] > 0.5) if "replan" in telemetry else np.zeros(0, int)

    plt.rcParams.update({"font.size": 8})
    action_height = 0.14 * num_actions + 0.2
    heights = [action_height, 0.3, action_height]
    # each panel's title and axis labels take about 0.45 in; the caption and legend 0.5 more
    figure, axes = plt.subplots(3, 1, figsize=(WIDTH_INCHES, sum(heights) + 3 * 0.45 + 0.5), dpi=100,
                                gridspec_kw={"height_ratios": heights}, layout="constrained")
    plan_axis, commit_axis, rollout_axis = axes
    name_size = 7 if num_actions <= 18 else 5

    image = plan_axis.imshow(newest, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(newest.max()), 1e-6),
                             interpolation="nearest")
    plan_axis.set_yticks(range(num_actions), action_names, fontsize=name_size)
    plan_axis.set_xticks([])
    plan_axis.set_title("newest action plan: p(action) at each plan step", fontsize=8)
    colour_bar = {"fraction": 0.05, "pad": 0.02, "format": "%.1f"}
    figure.colorbar(image, ax=plan_axis, **colour_bar)

    if commitment is not None:
        strip = commit_axis.imshow(commitment[None], aspect="auto", cmap="Oranges", vmin=0.0, vmax=1.0,
                                   interpolation="nearest")
        figure.colorbar(strip, ax=commit_axis, ticks=[0, 1], **colour_bar)
    commit_axis.set_yticks([0], ["re-plan p"], fontsize=name_size)
    commit_axis.set_xlabel("plan step τ (steps ahead)", fontsize=8, labelpad=1)
    commit_axis.set_title("commitment plan", fontsize=8)
    # the same x extent as the action plan above (their colour bars take the same share)
    commit_axis.set_xlim(plan_axis.get_xlim())

    shown = rollout_axis.imshow(executed, aspect="auto", cmap="viridis", vmin=0.0,
                                vmax=max(float(executed.max()), 1e-6), interpolation="nearest")
    figure.colorbar(shown, ax=rollout_axis, **colour_bar)
    rollout_axis.scatter(np.arange(T), actions[:, env], s=9, color="white", edgecolors="black", linewidths=0.4,
                         label="action taken", zorder=3)
    if len(replanned):
        rollout_axis.scatter(replanned, np.full(len(replanned), -0.9), marker="v", s=16, color="red",
                             clip_on=False, label="re-planned", zorder=4)
    rollout_axis.set_ylim(num_actions - 0.5, -1.3)
    rollout_axis.set_yticks(range(num_actions), action_names, fontsize=name_size)
    rollout_axis.set_xlabel("step of the rollout", fontsize=8, labelpad=1)
    rollout_axis.set_title(f"over the rollout: the plan's policy, the actions, {len(replanned)} re-plans", fontsize=8)
    figure.legend(*rollout_axis.get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncol=2,
                  frameon=False)

    if title:
        figure.suptitle(title, fontsize=8)
    figure.canvas.draw()
    rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return rgb
