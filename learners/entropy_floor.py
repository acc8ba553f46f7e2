"""An entropy floor: the entropy cost rises while the policy is surer than a set entropy.

A fixed entropy cost c_H pulls with a force that vanishes as the policy turns
deterministic (∂H/∂logits → 0), so a policy that collapses onto one action on noisy
advantages stays there: on POPGym Repeat Previous, 3 of 6 SAM runs fell to 0.06–0.1 nats a
step and never came back (benchmarks/RESULTS.md, "Repeat Previous Medium leaves chance").

The floor scales the cost by e^m and adapts m after every update from the batch's mean
entropy per step H̄ (nats):

    m ← max(0, m + rate · (H_floor − H̄))

so the cost is the configured c_H while H̄ stays above the floor, and grows geometrically
while it stays below, until the entropy term outweighs whatever drove the collapse. This is
the temperature update of soft actor-critic (Haarnoja et al. 2018, §5, the dual of an
entropy constraint E[H(π)] ≥ H_floor) applied one-sidedly, so a floor never lowers the
cost a config asked for.
"""

from __future__ import annotations

import math


class EntropyFloor:
    """Args:
        floor: H_floor in nats per step; None turns the floor off (the cost stays c_H).
        rate: how far m moves per update and nat of shortfall.
        num_actions: the action space's size; a floor at or above ln A could never be met.
    """

    def __init__(self, floor: float | None, rate: float, num_actions: int):
        if floor is not None and floor >= math.log(num_actions):
            raise ValueError(
                f"learner.entropy_floor {floor:g} nats is not below ln {num_actions} = {math.log(num_actions):.3f}, the "
                f"entropy of a uniform policy over this env's {num_actions} actions: no policy could meet it"
            )
        self.floor = floor
        self.rate = rate
        self.log_multiplier = 0.0  # m

    def cost(self, entropy_cost: float) -> float:
        """The entropy cost of the next update: c_H · e^m (c_H when the floor is off, even if a
        resumed run's saved m is not 0)."""
        if self.floor is None:
            return entropy_cost
        return entropy_cost * math.exp(self.log_multiplier)

    def observe(self, entropy_per_step: float) -> None:
        """Move m from the last batch's mean entropy per step, in nats."""
        if self.floor is None or not math.isfinite(entropy_per_step):
            return
        self.log_multiplier = max(0.0, self.log_multiplier + self.rate * (self.floor - entropy_per_step))

    def state_dict(self) -> dict:
        return {"log_multiplier": self.log_multiplier}

    def load_state_dict(self, state: dict) -> None:
        self.log_multiplier = float(state["log_multiplier"])
