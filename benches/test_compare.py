"""Conv1D in conv1d_rs and in other frameworks on the benchmark suite, with pytest-benchmark.

    pytest benches/test_compare.py                          # time every case x framework
    pytest benches/test_compare.py -k textcnn               # one case
    pytest benches/test_compare.py --benchmark-disable      # each once, as a correctness test

Results are grouped by case. Each framework's output is checked against conv1d_rs.
For a side-by-side table use benches/report.py, which interleaves the frameworks.
"""

from __future__ import annotations

import competitors
import pytest
from conftest import CASES, case_data

PARAMS = [
    pytest.param(name, fw, id=f"{name}-{fw}")
    for name in CASES  # case-major, so each case's inputs are made once
    for fw in competitors.FRAMEWORKS
]


@pytest.mark.parametrize(("case_name", "framework"), PARAMS)
def test_conv1d(benchmark, case_name, framework):
    pytest.importorskip(competitors.MODULES[framework])
    pytest.importorskip("conv1d_rs")
    case = CASES[case_name]
    x, kernel, bias, reference = case_data(case_name)
    comp = competitors.make(framework, case, x, kernel, bias)
    if comp.fn is None:
        pytest.skip(comp.reason)
    err = competitors.check_output(framework, comp.output, reference)
    assert err is None, err

    benchmark.group = case_name
    benchmark.extra_info["gflop"] = case["gflop"]
    benchmark.extra_info["shape"] = competitors.shape_summary(case)
    if comp.detail:
        benchmark.extra_info["algorithm"] = comp.detail
    benchmark(comp.fn)
