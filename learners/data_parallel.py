"""Data-parallel learners: N replicas, each on its share of a batch, one optimiser step.

The IMPALA loss is a sum over the batch's ``[T, B]`` steps (:mod:`learners.losses`), so the
whole batch's gradient is the sum of its shards' gradients. Each replica back-propagates its
own shard; :class:`ReplicaSum` adds the gradients up across replicas with one all-reduce
(``torch.distributed``: gloo on CPU, NCCL on GPU), and every replica, starting from the same
weights and optimiser state, takes the same step: the weights stay identical without being
sent. Whatever else a step decides from the whole batch is summed the same way: whether the
loss is finite, the advantages' moments (``learner.advantage_normalization``) and the loss
terms reported.

A batch is split by whole rollouts, so a memory core's packed state (SAM's rows in use)
is never cut: each replica stacks and unpacks its own rollouts, as a single learner would.
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist

GROUP_TIMEOUT = timedelta(minutes=30)  # torch's own default for gloo and NCCL


def host_meeting(host: str, timeout: timedelta = GROUP_TIMEOUT) -> dist.TCPStore:
    """Open the store where the replicas' group meets, on a port the OS gives while binding it;
    its ``port`` is the one to hand to the other replicas. (A port probed free and bound later
    can be taken in between: CI saw ``EADDRINUSE``.)"""
    return dist.TCPStore(host, 0, is_master=True, wait_for_workers=False, timeout=timeout)


def join_replicas(backend: str, rank: int, world: int, address: tuple[str, int] | None = None, *,
                  hosted: dist.TCPStore | None = None, timeout: timedelta = GROUP_TIMEOUT) -> None:
    """Join the replicas' process group as ``rank`` of ``world``: through the store this process
    hosts (``hosted``), or by connecting to ``address``, the (host, port) of another's."""
    if hosted is None:
        if address is None:
            raise ValueError("join_replicas needs the meeting's address or the store this process hosts")
        hosted = dist.TCPStore(address[0], address[1], is_master=False, timeout=timeout)
    dist.init_process_group(backend, store=hosted, rank=rank, world_size=world, timeout=timeout)


class ReplicaSum:
    """Sums tensors across the replicas of a ``torch.distributed`` process group (in place).

    ``device`` is where the group's backend takes its tensors: cpu for gloo, the replica's
    GPU for NCCL.
    """

    def __init__(self, group: dist.ProcessGroup | None = None, device: torch.device | str = "cpu"):
        self.group = group
        self.device = torch.device(device)
        self.replicas = dist.get_world_size(group)

    def tensors(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor with its sum over the replicas, in one all-reduce."""
        if not tensors:
            return
        bucket = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(bucket, op=dist.ReduceOp.SUM, group=self.group)
        offset = 0
        for tensor in tensors:
            tensor.copy_(bucket[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()

    def values(self, values: list[float]) -> list[float]:
        """The sums over the replicas of a few numbers (float64)."""
        bucket = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(bucket, op=dist.ReduceOp.SUM, group=self.group)
        return bucket.tolist()

    def gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the replicas; a parameter that got no gradient
        here counts as zero (another replica's shard may have reached it)."""
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.tensors([p.grad for p in parameters])
