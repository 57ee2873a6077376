"""Shared fixtures of the comparison benchmark: the suite, its inputs and the reference output."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import competitors  # sets the thread-count variables before any framework loads

SUITE = competitors.load_suite()
CASES = {case["name"]: case for case in SUITE["cases"]}


@functools.lru_cache(maxsize=1)
def case_data(name: str):
    """Inputs and the conv1d_rs output of a case; tests run case by case, so one is cached."""
    case = CASES[name]
    x, kernel, bias = competitors.make_inputs(case)
    reference = competitors.make_conv1d_rs(case, x, kernel, bias)
    return x, kernel, bias, reference.output
