"""The grader's own checks of 04_scaling_laws (autograder/trusted.py): fresh inputs, references
computed outside the learner's kernel with ``numpy.polyfit`` (power laws, IsoFLOP parabolas, the
allocation exponent), ``scipy.special.huber`` and ``scipy.optimize.minimize`` (the Chinchilla fit,
written out here: the paper's Huber objective on log losses, L-BFGS-B from the best points of the
same grid of starts). Never released to learners. The exercises take NumPy arrays: the cases say
``numpy=True``, so the kernel hands the learner's functions arrays, not tensors.

Not checked here (decided by the kernel's test cell under the guard alone):

- ``test_counting``: its first exercise, ``non_embedding_params``, takes a model, and the cell's
  mistakes in it (embeddings counted, biases forgotten) could not fail a check of ``kaplan_params``
  and ``training_flops`` alone, so the cell is left to the kernel;
- ``test_compute_frontier``: its input ``runs`` is a list of (size, tokens array, losses array); a
  case's arguments can only be arrays or plain JSON values today;
- the measured results of the notebook (the TinyLM runs, their fitted laws and frontier).

``fit_chinchilla`` is a fit: on the grader's synthetic runs (7 x 7 sizes and token counts, log-normal
noise of 0.2 %) from a random known law whose two power-law terms are both well above E at the smallest
N and D (otherwise E, B and beta trade off and L-BFGS-B stops anywhere along that valley), its five
numbers are compared with the grader's own scipy fit of the same runs within 5 % of each value and 0.01
absolute: the notebook's algorithm with np.logaddexp, six starts instead of three, or BFGS land within a
thousandth of that tolerance, Nelder-Mead within 0.6 of it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber

from autograder.trusted import Case, Check

HUBER_DELTA = 1e-3                    # the notebook's default delta (setup cell)
GRID = np.array(list(itertools.product(np.arange(0.0, 30.0, 5.0), np.arange(0.0, 30.0, 5.0), [-1.0, 0.0, 1.0],
                                       [0.5, 1.0, 1.5], [0.5, 1.0, 1.5])))


# ----------------------------------------------------------------------------- fit_power_law
def _power_cases(rng):
    cases = []
    for lo, hi, k, noise in ((3, 6, 6, 0.0), (5, 9, 9, 0.01), (10, 18, 12, 0.02)):
        x = np.logspace(lo, hi, k) * np.exp(0.1 * rng.standard_normal(k))
        x_c, alpha = 10.0 ** rng.uniform(lo + 2, hi + 8), rng.uniform(0.04, 1.5)
        cases.append(Case((x, (x_c / x) ** alpha * np.exp(noise * rng.standard_normal(k))), numpy=True))
    return cases


def _power(case, sign=-1.0, divide=True, linear=False):
    x, y = case.args
    slope, intercept = np.polyfit(x, y, 1) if linear else np.polyfit(np.log(x), np.log(y), 1)
    alpha = sign * slope
    return [np.array(math.exp(intercept / alpha) if divide else math.exp(intercept)), np.array(alpha)]


# --------------------------------------------------------------- predicted_log_loss, huber_objective
def _theta(rng) -> np.ndarray:
    return np.array([rng.uniform(2, 8), rng.uniform(2, 8), rng.uniform(-1, 1), rng.uniform(0.2, 0.6),
                     rng.uniform(0.2, 0.6)])


def _law_cases(rng):
    cases = []
    for k in (3, 7):
        log_n, log_d = rng.uniform(6, 24, k), rng.uniform(6, 28, k)
        cases.append(Case((_theta(rng), log_n, log_d), numpy=True))
    return cases


def _law(theta, log_n, log_d, with_e=True, sign=-1.0):
    a, b, e, alpha, beta = theta
    terms = np.exp(a + sign * alpha * log_n) + np.exp(b + sign * beta * log_d)
    return np.log(terms + (np.exp(e) if with_e else 0.0))


def _huber_cases(rng):
    cases = []
    for k, delta in ((5, 0.5), (9, 1e-3), (6, None)):
        theta, log_n, log_d = _theta(rng), rng.uniform(6, 24, k), rng.uniform(6, 28, k)
        log_loss = _law(theta, log_n, log_d) + rng.normal(0, 0.05, k)
        args = (theta, log_n, log_d, log_loss)
        cases.append(Case(args, numpy=True) if delta is None else Case(args, {"delta": delta}, numpy=True))
    return cases


def _huber(case, kind="huber", reduce=np.sum):
    theta, log_n, log_d, log_loss = case.args
    delta = case.kwargs.get("delta", HUBER_DELTA)
    predicted = _law(theta, log_n, log_d)
    residual = np.exp(predicted) - np.exp(log_loss) if kind == "loss" else predicted - log_loss
    value = {"huber": huber(delta, residual), "loss": huber(delta, residual), "squared": 0.5 * residual ** 2,
             "absolute": np.abs(residual)}[kind]
    return [np.array(float(reduce(value)))]


# ----------------------------------------------------------------------------- fit_chinchilla
CHINCHILLA_KEYS = ("E", "A", "B", "alpha", "beta")


def _chinchilla_cases(rng):
    cases = []
    for _ in range(2):
        # both power-law terms 1.5 to 4 times E at the smallest N and D: E, A and B stay identifiable
        E, alpha, beta = rng.uniform(0.8, 2.5), rng.uniform(0.28, 0.45), rng.uniform(0.28, 0.45)
        A, B = E * rng.uniform(1.5, 4) * 1e3 ** alpha, E * rng.uniform(1.5, 4) * 1e3 ** beta
        n, d = np.repeat(np.logspace(3, 6, 7), 7), np.tile(np.logspace(3, 6.5, 7), 7)
        loss = (E + A / n ** alpha + B / d ** beta) * np.exp(0.002 * rng.standard_normal(n.size))
        cases.append(Case((n, d, loss), numpy=True))
    return cases


def _objective(theta, log_n, log_d, log_loss):
    return float(np.sum(huber(HUBER_DELTA, _law(theta, log_n, log_d) - log_loss)))


def _chinchilla(case, log_of_loss=True, e_as_log=False):
    n, d, loss = case.args
    args = (np.log(n), np.log(d), np.log(loss) if log_of_loss else loss)
    screen = np.array([_objective(theta, *args) for theta in GRID])
    best = min((minimize(_objective, theta, args=args, method="L-BFGS-B") for theta in GRID[np.argsort(screen)[:3]]),
               key=lambda result: result.fun)
    a, b, e, alpha, beta = best.x
    return [np.array(v) for v in (e if e_as_log else math.exp(e), math.exp(a), math.exp(b), alpha, beta)]


# ------------------------------------------------------------------------------------ isoflop
def _optimum_cases(rng):
    cases = []
    for k, span in ((7, 1.0), (5, 0.8), (9, 1.2)):
        E, A, B, alpha, beta = rng.uniform(0.8, 2.0), rng.uniform(20, 400), rng.uniform(20, 400), \
            rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.5)
        c = 10 ** rng.uniform(9, 22)
        n_opt = (alpha * A / (beta * B)) ** (1 / (alpha + beta)) * (c / 6) ** (beta / (alpha + beta))
        offset = rng.uniform(-0.4, 0.4)
        n = n_opt * np.logspace(offset - span, offset + span, k)
        cases.append(Case((n, E + A / n ** alpha + B / (c / (6 * n)) ** beta), numpy=True))
    return cases


def _optimum(case, linear=False, vertex=2.0, grid=False):
    n, loss = case.args
    if grid:
        return [np.array(float(n[np.argmin(loss)]))]
    if linear:
        c2, c1, _ = np.polyfit(n, loss, 2)
        return [np.array(-c1 / (2 * c2))]
    c2, c1, _ = np.polyfit(np.log(n), loss, 2)
    return [np.array(math.exp(-c1 / (vertex * c2)))]


def _allocation_cases(rng):
    cases = []
    for g in (4, 6):
        budgets = np.logspace(rng.uniform(9, 12), rng.uniform(16, 23), g)
        a = rng.uniform(0.4, 0.75)
        n_opt = 10 ** rng.uniform(-2, 1) * budgets ** a * np.exp(0.05 * rng.standard_normal(g))
        cases.append(Case((budgets, n_opt), numpy=True))
    return cases


def _allocation(case, against="C"):
    budgets, n_opt = case.args
    x = {"C": np.log(budgets), "D": np.log(budgets / (6 * n_opt)), "linear": budgets}[against]
    y = n_opt if against == "linear" else np.log(n_opt)
    return [np.array(np.polyfit(x, y, 1)[0])]


def _exponent_cases(rng):
    return [Case((0.34, 0.28))] + [Case((float(rng.uniform(0.1, 1.0)), float(rng.uniform(0.1, 1.0))))
                                   for _ in range(2)]


def _exponents(case, swap=False):
    alpha, beta = case.args
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    return [np.array(b), np.array(a)] if swap else [np.array(a), np.array(b)]


CHECKS = [
    Check("test_fit_power_law", "fit_power_law", _power_cases, _power, atol=0, rtol=1e-6,
          mistakes={"sign of alpha: y = (x_c/x)^alpha decreases, so alpha = -slope > 0":
                    lambda case: _power(case, sign=1.0),
                    "x_c from the intercept without dividing by alpha: intercept = alpha * log(x_c)":
                    lambda case: _power(case, divide=False),
                    "fitted in linear space: fit log(y) against log(x)": lambda case: _power(case, linear=True)}),
    Check("test_chinchilla_fit", "predicted_log_loss", _law_cases, lambda case: [_law(*case.args)],
          atol=1e-9, rtol=1e-9,
          mistakes={"irreducible term E left out: the law is E + A/N^alpha + B/D^beta":
                    lambda case: [_law(*case.args, with_e=False)],
                    "returned the loss itself, not its logarithm": lambda case: [np.exp(_law(*case.args))],
                    "exponents with the wrong sign: A/N^alpha is a - alpha log N in log space":
                    lambda case: [_law(*case.args, sign=1.0)]}),
    Check("test_chinchilla_fit", "huber_objective", _huber_cases, _huber, atol=1e-12, rtol=1e-9,
          mistakes={"squared error instead of the Huber loss": lambda case: _huber(case, kind="squared"),
                    "residuals of the loss, not of the log loss: compare log L-hat with log L":
                    lambda case: _huber(case, kind="loss"),
                    "mean instead of sum over the runs": lambda case: _huber(case, reduce=np.mean),
                    "absolute error instead of the Huber loss": lambda case: _huber(case, kind="absolute")}),
    Check("test_chinchilla_fit", "fit_chinchilla", _chinchilla_cases, _chinchilla, keys=CHINCHILLA_KEYS,
          atol=0.01, rtol=0.05,
          mistakes={"E returned as log E: E, A, B are exp(e), exp(a), exp(b) of the fitted parameters":
                    lambda case: _chinchilla(case, e_as_log=True)}),
    Check("test_isoflop", "isoflop_optimum", _optimum_cases, _optimum, atol=0, rtol=1e-6,
          mistakes={"parabola fitted in N on a linear axis: fit the loss against log N":
                    lambda case: _optimum(case, linear=True),
                    "minimum taken over the grid points, not at the vertex of the parabola in log N":
                    lambda case: _optimum(case, grid=True),
                    "vertex read as -b/a (it is -b/(2a))": lambda case: _optimum(case, vertex=1.0)}),
    Check("test_isoflop", "allocation_exponent", _allocation_cases, _allocation, atol=1e-9, rtol=1e-9,
          mistakes={"exponent taken against D_opt instead of the compute C: regress log N_opt on log C":
                    lambda case: _allocation(case, against="D"),
                    "slope fitted on linear axes: fit log N_opt against log C":
                    lambda case: _allocation(case, against="linear")}),
    Check("test_isoflop", "chinchilla_exponents", _exponent_cases, _exponents, atol=1e-12, rtol=1e-12,
          mistakes={"a and b swapped: N_opt grows like C^(beta/(alpha+beta)), D_opt like C^(alpha/(alpha+beta))":
                    lambda case: _exponents(case, swap=True)}),
]
