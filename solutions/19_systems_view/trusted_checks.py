"""The grader's own checks of 19_systems_view (autograder/trusted.py): fresh inputs, references
computed outside the learner's kernel: ``numpy.polyfit`` for the alpha-beta fit, and the module's
formulas (ring collectives, bytes per strategy, ZeRO's model states, 6N FLOPs per token, the plan)
written out here in float64. Never released to learners.

Not checked here (decided by the kernel's test cell under the guard alone):

- the measurements the notebook compares the formulas with (bytes and tensors counted in real
  ``torchrun`` launches, this machine's timings and MFU): the grader checks the formulas on its own
  configurations, not what one machine measured.
"""

from __future__ import annotations

import math

import numpy as np

from autograder.trusted import Case, Check


# ---------------------------------------------------------------------------- fit_alpha_beta
def _fit_cases(rng):
    cases = []
    for k, as_lists in ((7, False), (int(rng.integers(5, 15)), False), (9, True)):
        sizes = np.sort(1e3 + 1e7 * rng.random(k))
        alpha, beta = rng.uniform(2e-5, 5e-4), 1 / rng.uniform(1e8, 5e9)
        seconds = alpha + beta * sizes + 0.01 * alpha * rng.standard_normal(k)
        cases.append(Case((sizes.tolist(), seconds.tolist()) if as_lists else (sizes, seconds)))
    exact = 2.0 ** np.arange(10, 23, 2)
    return cases + [Case((exact, 50e-6 + exact / 2e9))]


def _fit(case):
    n, t = (np.asarray(a, dtype=np.float64) for a in case.args)
    alpha, beta = np.polyfit(n, t, 1)[::-1]
    return [np.array(alpha), np.array(beta)]


def _fit_through_origin(case):
    n, t = (np.asarray(a, dtype=np.float64) for a in case.args)
    return [np.array(0.0), np.array(n @ t / (n @ n))]


def _fit_swapped(case):
    n, t = (np.asarray(a, dtype=np.float64) for a in case.args)
    return [np.array(v) for v in np.polyfit(t, n, 1)[::-1]]


# ------------------------------------------------------------------------ collective_seconds
def _collective_cases(rng):
    cases = []
    for op in ("all_reduce", "all_gather", "reduce_scatter"):
        for world in (2, int(rng.integers(3, 65))):
            cases.append(Case((op, float(rng.uniform(1e3, 1e9)), world, float(rng.uniform(1e-6, 1e-4)),
                               float(1 / rng.uniform(1e9, 1e11)))))
    return cases + [Case(("all_reduce", 1e6, 1, 3e-5, 1e-9))]


def _collective(case, passes=None, chunk=True):
    op, n_bytes, world, alpha, beta = case.args
    steps = (world - 1) * ((2 if op == "all_reduce" else 1) if passes is None else passes)
    return [np.array(steps * alpha + steps * (n_bytes / world if chunk else n_bytes) * beta)]


# ----------------------------------------------------------------------- communication_bytes
def _bytes_cases(rng):
    cases = []
    for strategy in ("dp", "zero1", "zero2", "zero3"):
        cases.append(Case((strategy, int(rng.integers(2, 17))),
                          {"n_params": int(rng.integers(1000, 10**9)), "dtype_bytes": int(rng.choice([2, 4]))}))
    for strategy in ("tp", "pp"):
        cases.append(Case((strategy, int(rng.integers(2, 9))),
                          {"tokens": int(rng.integers(16, 8192)), "hidden": int(rng.integers(16, 4096)),
                           "blocks": int(rng.integers(1, 49)), "dtype_bytes": int(rng.choice([2, 4]))}))
    return cases + [Case(("dp", 1), {"n_params": 12345})]


def _bytes(case, ring=True, zero3_passes=3, tp_passes=2, pp_passes=2):
    strategy, world = case.args
    kw = {"n_params": 0, "tokens": 0, "hidden": 0, "blocks": 0, "dtype_bytes": 4, **case.kwargs}
    factor = (world - 1) / world if ring else 1.0
    if strategy in ("dp", "zero1", "zero2"):
        value = 2 * factor * kw["n_params"] * kw["dtype_bytes"]
    elif strategy == "zero3":
        value = zero3_passes * factor * kw["n_params"] * kw["dtype_bytes"]
    elif strategy == "tp":
        value = kw["blocks"] * tp_passes * 2 * factor * kw["tokens"] * kw["hidden"] * kw["dtype_bytes"]
    else:
        value = pp_passes * factor * kw["tokens"] * kw["hidden"] * kw["dtype_bytes"]
    return [np.array(float(value))]


# --------------------------------------------------------------------------- memory_per_rank
MEMORY_KEYS = ("params", "grads", "optimizer", "total")


def _memory_cases(rng):
    cases = []
    for stage in range(4):
        for b in (2, 4):
            cases.append(Case((int(rng.integers(1000, 10**10)), int(rng.integers(2, 129)), stage, b)))
    return cases + [Case((1001, 3, 3, 2)), Case((7_500_000_000, 64, 1))]      # b = 2 by default


def _memory(case, k_mixed=12, k_fp32=8, grads_from=2, params_from=3):
    psi, world, stage = case.args[:3]
    b = case.args[3] if len(case.args) > 3 else 2
    shard, k = -(-psi // world), (k_mixed if b < 4 else k_fp32)
    params = b * (shard if stage >= params_from else psi)
    grads = b * (shard if stage >= grads_from else psi)
    optimizer = k * (shard if stage >= 1 else psi)
    return [np.array(v, dtype=np.int64) for v in (params, grads, optimizer, params + grads + optimizer)]


# ------------------------------------------------------------------- model_flops_utilisation
def _mfu_cases(rng):
    return [Case((540e9, 238.3e3, 1.0, 6144 * 275e12))] + [
        Case((float(rng.uniform(1e6, 1e12)), float(rng.integers(512, 10**7)), float(rng.uniform(0.01, 10.0)),
              float(rng.uniform(1e11, 1e16)))) for _ in range(2)]


def _mfu(case, flops_per_token=6):
    n, tokens, seconds, peak = case.args
    return [np.array(flops_per_token * n * tokens / seconds / peak)]


# ---------------------------------------------------------------------------------------- plan
PLAN_KEYS = ("state_bytes", "activation_bytes", "total_bytes", "fits", "compute_seconds", "comm_seconds",
             "step_seconds")
GPU = {"gpu_bytes": 80e9, "peak_flops": 989e12, "mfu": 0.4, "alpha": 5e-6, "beta": 1 / 50e9}


def _plan_cases(rng):
    cases = [Case(kwargs={"n_params": 7_000_000_000, "layers": 32, "hidden": 4096, "seq_len": 4096, "micro_batch": 1,
                          "micro_batches": 8, "dtype_bytes": 2, "zero_stage": 1, "dp": 8, "tp": 4, "pp": 2, **GPU})]
    for zero_stage in range(4):
        layers, hidden = int(rng.integers(2, 97)), int(rng.choice([512, 1024, 2048, 4096, 8192]))
        cases.append(Case(kwargs={
            "n_params": int(12 * layers * hidden ** 2 + rng.integers(0, 1000)), "layers": layers, "hidden": hidden,
            "seq_len": int(rng.choice([512, 2048, 4096, 8192])), "micro_batch": int(rng.integers(1, 9)),
            "micro_batches": int(rng.integers(1, 17)), "dtype_bytes": int(rng.choice([2, 4])),
            "zero_stage": zero_stage, "dp": int(rng.integers(1, 17)), "tp": int(rng.choice([1, 2, 4, 8])),
            "pp": int(rng.choice([1, 2, 3, 4])), "gpu_bytes": float(rng.choice([24e9, 80e9, 141e9])),
            "peak_flops": float(rng.uniform(1e14, 2e15)), "mfu": float(rng.uniform(0.2, 0.6)),
            "alpha": float(rng.uniform(1e-6, 2e-5)), "beta": float(1 / rng.uniform(1e10, 4e11))}))
    return cases


def _plan(case, split=True, bubble=True, activations_by_tp=True):
    c = case.kwargs
    psi_rank = -(-c["n_params"] // (c["tp"] * c["pp"])) if split else c["n_params"]
    state = _memory(Case((psi_rank, c["dp"], c["zero_stage"], c["dtype_bytes"])))[-1]
    activations = (17 * c["seq_len"] * c["micro_batch"] * c["hidden"] * c["dtype_bytes"]
                   * math.ceil(c["layers"] / c["pp"]) * min(c["pp"], c["micro_batches"])
                   / (c["tp"] if activations_by_tp else 1))
    total = float(state) + activations
    compute = 6 * c["n_params"] * c["micro_batches"] * c["micro_batch"] * c["seq_len"] / (
        c["tp"] * c["pp"] * c["peak_flops"] * c["mfu"])
    if bubble:
        compute *= (c["micro_batches"] + c["pp"] - 1) / c["micro_batches"]
    comm = _collective(Case(("all_reduce", psi_rank * c["dtype_bytes"], c["dp"], c["alpha"], c["beta"])))[0]
    comm = float(comm) * (1.5 if c["zero_stage"] == 3 else 1.0)
    return [np.array(float(state)), np.array(activations), np.array(total), np.array(total <= c["gpu_bytes"]),
            np.array(compute), np.array(comm), np.array(compute + comm)]


FIT = ("polyfit", "lstsq", "linregress", "curve_fit", "Polynomial")

CHECKS = [
    Check("test_fit_alpha_beta", "fit_alpha_beta", _fit_cases, _fit, atol=0, rtol=1e-8, forbidden=FIT,
          mistakes={"fitted without the intercept (a line through the origin: alpha = 0)": _fit_through_origin,
                    "swapped the axes (fitted sizes against times)": _fit_swapped}),
    Check("test_collective_seconds", "collective_seconds", _collective_cases, _collective, atol=0, rtol=1e-12,
          mistakes={"the all-reduce counted as one pass (it is a reduce-scatter AND an all-gather: twice)":
                    lambda case: _collective(case, passes=1),
                    "every step sends the whole buffer (each ring step sends a chunk of n/W bytes)":
                    lambda case: _collective(case, chunk=False)}),
    Check("test_communication_bytes", "communication_bytes", _bytes_cases, _bytes, atol=0, rtol=1e-12,
          mistakes={"the ring factor (W-1)/W is missing": lambda case: _bytes(case, ring=False),
                    "ZeRO-3 counted like DP (the parameters are all-gathered AGAIN in the backward: 3, not 2)":
                    lambda case: _bytes(case, zero3_passes=2),
                    "TP counted only the forward all-reduce (the backward all-reduces the activations' gradient too)":
                    lambda case: _bytes(case, tp_passes=1),
                    "PP counted only the activations going forward (their gradients come back)":
                    lambda case: _bytes(case, pp_passes=1)}),
    Check("test_memory_per_rank", "memory_per_rank", _memory_cases, _memory, keys=MEMORY_KEYS, atol=0, rtol=0,
          mistakes={"the optimizer counted as Adam's two moments only (mixed precision keeps an fp32 master copy "
                    "too: K = 12)": lambda case: _memory(case, k_mixed=8),
                    "the fp32 master copy counted in fp32 training too (there the parameters are their own "
                    "master: K = 8)": lambda case: _memory(case, k_fp32=12),
                    "gradients sharded from ZeRO-1 on (ZeRO-1 shards only the optimizer state; ZeRO-2 the "
                    "gradients)": lambda case: _memory(case, grads_from=1),
                    "parameters sharded before ZeRO-3 (stages 1 and 2 keep all the parameters)":
                    lambda case: _memory(case, params_from=1)}),
    Check("test_model_flops_utilisation", "model_flops_utilisation", _mfu_cases, _mfu, atol=0, rtol=1e-12,
          mistakes={"counted only the forward pass (2 N per token; the backward adds 4 N)":
                    lambda case: _mfu(case, flops_per_token=2)}),
    Check("test_plan", "plan", _plan_cases, _plan, keys=PLAN_KEYS, atol=0, rtol=1e-9,
          mistakes={"the weights not split by tensor and pipeline parallelism (each rank has Psi / (t p))":
                    lambda case: _plan(case, split=False),
                    "the pipeline bubble is missing (the step takes (m + p - 1) / m times the compute)":
                    lambda case: _plan(case, bubble=False),
                    "activations not divided by the tensor-parallel degree":
                    lambda case: _plan(case, activations_by_tp=False)}),
]
