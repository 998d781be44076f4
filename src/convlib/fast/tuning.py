"""The measured choice: time every candidate plan once per (shape, dtype, device, threads, memory format).

As ``torch.backends.cudnn.benchmark`` does: the first call of a new shape runs every candidate on its own
arguments (one warm-up, then a few rounds, the candidates interleaved so that a burst of load hits them all
alike), keeps the fastest plan for the rest of the process, and returns that plan's result.
"""

from __future__ import annotations

import threading
import time

import torch

from . import choose
from .plan import Plan, Shape
from .registry import FORMULATIONS
from .workspace import cached

__all__ = ["runner", "tuned_plan", "time_plans", "clock", "clear_choices", "choices"]

_CHOICES: dict[tuple, Plan] = {}
MAX_ROUNDS = 9  # timed rounds at most, where they are cheap ...
ROUND_BUDGET_S = 0.3  # ... within about this many seconds
_LOCK = threading.Lock()


def runner(plan: Plan, dtype, device):
    """The callable that computes ``plan`` (its workspace kept in this thread's cache)."""
    return cached((plan, dtype, str(device)), lambda: FORMULATIONS[plan.mode].runner(plan, dtype, device))


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def clock(device="cpu"):
    """What the measurements read: with one CPU thread, the process's CPU time (time another process takes
    on a busy machine is not counted, so the choice holds under load); otherwise the wall clock."""
    if torch.device(device).type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


def _extra_rounds(round_seconds: float, rounds: int) -> int:
    """More rounds where a round is cheap: up to ``MAX_ROUNDS`` within about ``ROUND_BUDGET_S`` seconds."""
    affordable = int(ROUND_BUDGET_S / max(round_seconds, 1e-9))
    return max(rounds, min(MAX_ROUNDS, affordable))


def time_plans(plans, x, weight, bias, channels_last=False, rounds=None) -> dict[Plan, float]:
    """The best time (seconds) of each plan on these arguments: a warm-up each, then interleaved rounds (at
    least ``rounds``, more where they are cheap). A plan whose warm-up took ten times the fastest warm-up is
    timed no further (its best time stays infinite), nor after the first round one more than twice as slow as
    the best, nor after the third one more than 1.3 times as slow."""
    rounds = choose.settings.rounds if rounds is None else rounds
    now = clock(x.device)
    run = {p: FORMULATIONS[p.mode].runner(p, x.dtype, x.device) for p in plans}
    best, warm = dict.fromkeys(plans, float("inf")), {}
    live, r = list(plans), 0
    while r <= rounds:
        for p in live:
            _sync(x.device)
            start = now()
            run[p](x, weight, bias, channels_last)
            _sync(x.device)
            if r:
                best[p] = min(best[p], now() - start)
            else:  # round 0 warms up (and builds the workspaces)
                warm[p] = now() - start
        if r == 0:  # a warm-up ten times the fastest one's (workspace built, so an upper bound): out
            live = [p for p in live if warm[p] <= 10 * min(warm.values())]
        if r == 1:
            rounds = _extra_rounds(sum(best[p] for p in live), rounds)
        if r in (1, 3):
            fastest = min(best.values())
            live = [p for p in live if best[p] <= (2.0 if r == 1 else 1.3) * fastest]
        r += 1
    return best


def _key(shape: Shape, x, channels_last) -> tuple:
    """What the choice depends on: the shape, dtype, device, thread count, the result's memory format and
    whether the input is stored NCHW (else it is copied or read channels-last)."""
    return (shape, x.dtype, str(x.device), torch.get_num_threads(), channels_last, x.is_contiguous())


def tuned_plan(shape: Shape, x, weight, bias, channels_last=False) -> Plan:
    """The fastest plan for this shape here, measured on the first call and remembered."""
    key = _key(shape, x, channels_last)
    plan = _CHOICES.get(key)
    if plan is None:
        plans = choose.candidates(shape, x.dtype, x.device, channels_last=channels_last)
        if len(plans) == 1:
            plan = plans[0]
        else:
            best = time_plans(plans, x, weight, bias, channels_last)
            plan = min(plans, key=lambda p: (best[p], plans.index(p)))
        with _LOCK:
            _CHOICES[key] = plan
    return plan


def choices() -> dict[tuple, Plan]:
    """The plans chosen so far: (shape, dtype, device, threads, channels-last result, NCHW input) -> plan."""
    return dict(_CHOICES)


def clear_choices() -> None:
    """Forget the measured choices (the next call of each shape measures again)."""
    with _LOCK:
        _CHOICES.clear()
