"""The memory-access picture of a SAM / SDNC core: which rows each head touched, when, how hard.

Drawn from one environment's slice of a rollout's core telemetry (``[T+1, ...]`` per name,
see :class:`agents.sam.sam_core.SparseMemoryCore`):

* **access**: time on the x axis, the rows touched in the window on the y axis (only those,
  labelled with their row numbers); each read head a colour, the write head black; a
  marker's size and opacity grow with the access weight;
* **least-recently-used order**: for the same rows, the steps since each row was last
  accessed with a weight above SAM's usage threshold (Rae et al. 2016, §3.3, U(2)): the row
  with the largest age is the one the next write to a free row takes. Ages are counted from
  accesses inside the window; before a row's first access here its cell is blank;
* **read modes** (SDNC only): per head, the share π of each read mode, backward along the
  temporal links, content, forward along the links (Rae et al. 2016, Supp. F): the links
  followed.

The figure is rendered to an RGB array ``[H, W, 3]`` (uint8) for TensorBoard. TensorBoard
shows images about 330 pixels wide by default, so the figure is narrow (4.6 inches) with
9-point text: about 9 pixels high when shown at that width.
"""

from __future__ import annotations

import textwrap

import numpy as np

ACCESS_THRESHOLD = 0.005  # SAM's usage threshold δ: weights below it do not count as an access
MAX_ROWS = 24  # rows shown; the most touched ones when a window touches more
WIDTH_INCHES = 4.6
TITLE_CHARS = 60  # 9-point characters that fit across WIDTH_INCHES


def _touched(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows with at least one access above the threshold, in order of first access."""
    order, seen = [], set()
    for t in range(rows.shape[0]):
        for row, weight in zip(rows[t].ravel(), weights[t].ravel()):
            if weight > ACCESS_THRESHOLD and row >= 0 and row not in seen:
                seen.add(row)
                order.append(int(row))
    return np.asarray(order, dtype=np.int64)


def lru_ages(access_rows: np.ndarray, access_weights: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """``[T, R]`` steps since each shown row's last access (NaN before its first one).

    ``access_rows`` / ``access_weights``: ``[T, M]`` every access of step t (all heads, reads
    and writes together).
    """
    T = access_rows.shape[0]
    ages = np.full((T, len(shown)), np.nan)
    last = {}
    position = {int(row): i for i, row in enumerate(shown)}
    for t in range(T):
        for row, weight in zip(access_rows[t], access_weights[t]):
            if weight > ACCESS_THRESHOLD and int(row) in position:
                last[int(row)] = t
        for row, i in position.items():
            if row in last:
                ages[t, i] = t - last[row]
    return ages


def draw(telemetry: dict[str, np.ndarray], *, env: int = 0, first_step: int = 0, title: str = "") -> np.ndarray:
    """RGB ``[H, W, 3]`` uint8 of env ``env``'s memory access over the rollout's steps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    read_rows = telemetry["read_rows"][:, env]  # [T, H, K]
    read_weights = telemetry["read_weights"][:, env]
    write_rows = telemetry["write_rows"][:, env]  # [T, Hw, K+1]
    write_weights = telemetry["write_weights"][:, env]
    modes = telemetry.get("read_modes")
    T, heads = read_rows.shape[0], read_rows.shape[1]
    steps = np.arange(T) + first_step

    flat_rows = np.concatenate([read_rows.reshape(T, -1), write_rows.reshape(T, -1)], axis=1)
    flat_weights = np.concatenate([read_weights.reshape(T, -1), write_weights.reshape(T, -1)], axis=1)
    shown = _touched(flat_rows, flat_weights)
    if len(shown) > MAX_ROWS:
        counts = {int(r): int(((flat_rows == r) & (flat_weights > ACCESS_THRESHOLD)).sum()) for r in shown}
        keep = set(sorted(counts, key=counts.get, reverse=True)[:MAX_ROWS])
        shown = np.asarray([r for r in shown if r in keep])
    position = {int(row): i for i, row in enumerate(shown)}

    panels = 3 if modes is not None else 2
    heights = [3.0, 2.0, 1.5][:panels]
    plt.rcParams.update({"font.size": 9})
    figure, axes = plt.subplots(panels, 1, figsize=(WIDTH_INCHES, sum(heights) + 1.2), sharex=True,
                                gridspec_kw={"height_ratios": heights}, dpi=100)
    row_labels = [str(r) if i % max(1, len(shown) // 12) == 0 else "" for i, r in enumerate(shown)]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    access = axes[0]
    for head in range(heads):
        xs, ys, ws = [], [], []
        for t in range(T):
            for row, weight in zip(read_rows[t, head], read_weights[t, head]):
                if weight > ACCESS_THRESHOLD and int(row) in position:
                    xs.append(steps[t]), ys.append(position[int(row)]), ws.append(float(weight))
        if xs:
            ws = np.clip(np.asarray(ws), 0.0, 1.0)
            colour = matplotlib.colors.to_rgba(colours[head % len(colours)])
            access.scatter(xs, ys, s=10 + 70 * ws, color=[(*colour[:3], 0.25 + 0.75 * w) for w in ws],
                           marker="o", label=f"read head {head}")
    xs, ys, ws = [], [], []
    for t in range(T):
        for row, weight in zip(write_rows[t].ravel(), write_weights[t].ravel()):
            if weight > ACCESS_THRESHOLD and int(row) in position:
                xs.append(steps[t]), ys.append(position[int(row)]), ws.append(float(weight))
    if xs:
        ws = np.clip(np.asarray(ws), 0.0, 1.0)
        access.scatter(xs, ys, s=12 + 80 * ws, color=[(0, 0, 0, 0.3 + 0.7 * w) for w in ws], marker="x",
                       label="write")
    access.set_ylabel("row touched")
    access.set_yticks(range(len(shown)))
    access.set_yticklabels(row_labels, fontsize=8)
    access.set_ylim(-0.7, max(len(shown), 1) - 0.3)
    access.invert_yaxis()
    # wrapped: a caption wider than the 4.6-inch figure would be cut at both edges
    access.set_title(textwrap.fill(title or "memory access (size, opacity: weight)", TITLE_CHARS), fontsize=9)
    access.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=heads + 1,
                  frameon=False, handletextpad=0.2, columnspacing=0.8)
    access.grid(alpha=0.2)

    ages = lru_ages(flat_rows, flat_weights, shown)
    lru = axes[1]
    image = lru.imshow(ages.T, aspect="auto", cmap="viridis", interpolation="nearest",
                       extent=(steps[0] - 0.5, steps[-1] + 0.5, len(shown) - 0.5, -0.5))
    lru.set_ylabel("row touched")
    lru.set_yticks(range(len(shown)))
    lru.set_yticklabels(row_labels, fontsize=8)
    lru.set_title("steps since last access (largest: least recently used)", fontsize=9)
    figure.colorbar(image, cax=lru.inset_axes((1.01, 0.0, 0.015, 1.0)), label="steps")  # keeps the x axes aligned

    if modes is not None:
        mode_axis = axes[2]
        names = ("backward", "content", "forward")
        styles = ("--", "-", ":")
        for head in range(heads):
            for m, style in enumerate(styles):
                mode_axis.plot(steps, modes[:, env, head, m], linestyle=style, color=colours[head % len(colours)],
                               linewidth=1.2)
        for name, style in zip(names, styles):  # the legend names the line styles; colours are the heads above
            mode_axis.plot([], [], linestyle=style, color="grey", label=name)
        mode_axis.set_ylim(0, 1)
        mode_axis.set_ylabel("mode π")
        mode_axis.set_title("read modes per head (backward/forward: links followed)", fontsize=9)
        mode_axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=3, frameon=False)
        mode_axis.grid(alpha=0.2)
    axes[-1].set_xlabel("agent step in the rollout")
    figure.tight_layout()
    figure.canvas.draw()
    rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return rgb
