"""The grader's own checks of 14_data_parallel (autograder/trusted.py): fresh inputs, references
computed outside the learner's kernel (PyTorch's own ``DistributedSampler``). Never released to
learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_average_gradients``, ``test_accumulation_step``, ``test_ring_all_reduce``,
  ``test_zero_one_adam``: they run on several ranks under torchrun (their inputs are a model, a DDP
  model and an optimizer, or a process group), which the grader's checks (one call in the kernel)
  do not start.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import DistributedSampler

from autograder.trusted import Case, Check


def _shard_cases(rng):
    cases = []
    for n, world in ((10, 4), (3, 7), (int(rng.integers(1, 60)), int(rng.integers(1, 9)))):
        cases += [Case((n, rank, world)) for rank in range(world)]
    return cases


def _shard(case):
    n, rank, world = case.args
    # a list answer comes back as its items
    return [np.array(i) for i in DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)]


def _unpadded(case):
    n, rank, world = case.args
    return [np.array(i) for i in range(n)[rank::world]]


CHECKS = [
    Check("test_shard_indices", "shard_indices", _shard_cases, _shard, atol=0, rtol=0,
          forbidden=("DistributedSampler",),
          mistakes={"unequal shards: range(n) not padded to ceil(n / world_size) * world_size": _unpadded}),
]
