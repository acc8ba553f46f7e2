"""engram: distributed reinforcement learning for agents with long memories."""

from engram.own_packages import check_own_packages

check_own_packages()
