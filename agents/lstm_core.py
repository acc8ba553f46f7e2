"""The LSTM baseline core (Hochreiter & Schmidhuber 1997), as used by IMPALA."""

from __future__ import annotations

import torch
from torch import nn

from agents.core import CoreOutput, RecurrentCore, State


class LSTMCore(RecurrentCore):
    """A single-layer LSTM cell over one time step.

    State: ``hidden`` ``[B, H]`` and ``cell`` ``[B, H]``.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.output_size = hidden_size

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        zeros = torch.zeros(batch_size, self.output_size, device=device)
        return {"hidden": zeros, "cell": zeros.clone()}

    def forward(self, features, state, replay=None):
        hidden, cell = self.cell(features, (state["hidden"], state["cell"]))
        return CoreOutput(features=hidden), {"hidden": hidden, "cell": cell}
