"""Side-by-side timing of the backward pass: conv1d_rs against torch autograd and jax.vjp.

    python benches/backward_report.py                 # full suite -> results/backward.md
    python benches/backward_report.py --cases textcnn,longkernel --rounds 5

Each framework computes the gradients of sum(conv1d(x, kernel, bias) * dy) with respect to
input, kernel and bias, on 2 threads, in one process, interleaved over rounds (a new, seeded
order each round, and one untimed call before each sample); a time is the median over
rounds. Each framework's gradients are checked against conv1d_rs once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import competitors as C  # sets thread counts before any framework loads

import numpy as np


def conv1d_rs_backward(case, x, kernel, dy):
    import conv1d_rs

    kw = {k: case[k] for k in ("strides", "padding", "data_format", "dilation_rate", "groups")}
    return lambda: conv1d_rs.conv1d_backward(x, kernel, dy, **kw)


def torch_backward(case, x, kernel, dy):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(C.THREADS)
    left, right = C.keras_pads(case)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).requires_grad_()
    wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 1, 0))).requires_grad_()
    bt = torch.zeros(kernel.shape[2], requires_grad=True)
    dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 2, 1)))

    def run():
        y = F.conv1d(
            F.pad(xt, (left, right)),
            wt,
            bt,
            stride=case["strides"],
            dilation=case["dilation_rate"],
            groups=case["groups"],
        )
        dx, dw, db = torch.autograd.grad(y, (xt, wt, bt), dyt)
        return dx.numpy().transpose(0, 2, 1), dw.numpy().transpose(2, 1, 0), db.numpy()

    return run


def jax_backward(case, x, kernel, dy):
    import jax
    import jax.numpy as jnp

    pads = [C.keras_pads(case)]

    def conv(xj, kj, bj):
        y = jax.lax.conv_general_dilated(
            xj,
            kj,
            window_strides=(case["strides"],),
            padding=pads,
            rhs_dilation=(case["dilation_rate"],),
            dimension_numbers=("NWC", "WIO", "NWC"),
            feature_group_count=case["groups"],
        )
        return y + bj

    @jax.jit
    def grads(xj, kj, bj, dyj):
        _, vjp = jax.vjp(conv, xj, kj, bj)
        return vjp(dyj)

    args = [jnp.asarray(a) for a in (x, kernel, np.zeros(kernel.shape[2], np.float32), dy)]
    return lambda: jax.block_until_ready(grads(*args))


FRAMEWORKS = {"conv1d_rs": conv1d_rs_backward, "torch": torch_backward, "jax": jax_backward}


def agree(ours, theirs) -> bool:
    return all(
        np.allclose(np.asarray(t), o, rtol=1e-3, atol=1e-3 * float(np.abs(o).max() + 1))
        for o, t in zip(ours, theirs)
        if o is not None
    )


def time_case(case: dict, rounds: int) -> dict:
    x, kernel, _ = C.make_inputs(case)
    dy = np.random.default_rng(1).standard_normal((case["batch"], C.output_steps(case), case["filters"]))
    dy = dy.astype(np.float32)
    runs, notes = {}, {}
    for name, make in FRAMEWORKS.items():
        try:
            runs[name] = make(case, x, kernel, dy)
        except ImportError as err:
            notes[name] = f"skipped: {err}"
    reference = runs["conv1d_rs"]()
    for name, run in runs.items():
        if name != "conv1d_rs" and not agree(reference, run()):
            notes[name] = "gradients differ"
    samples = {name: [] for name in runs}
    for r in range(rounds):
        for name in C.round_order(runs, r):
            C.settle()
            runs[name]()  # untimed: the sample starts from this framework's own state
            start, calls = time.perf_counter(), 0
            while calls < 1 or time.perf_counter() - start < 0.05:
                runs[name]()
                calls += 1
            samples[name].append((time.perf_counter() - start) / calls * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()} | {"notes": notes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cases = C.load_suite()["cases"]
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c["name"] in wanted]
    lines = [
        "# Backward pass: conv1d_rs against torch autograd and jax.vjp, float32, 2 threads",
        "",
        f"{', '.join(f'{k} {v}' for k, v in C.versions().items())}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
        "gradients of input, kernel and bias; "
        f"median ms over {args.rounds} interleaved rounds in a new, seeded order each, "
        "waiting before each sample until the previous framework's worker threads have stopped spinning "
        "and making one untimed call.",
        "",
        "| case | conv1d_rs ms | torch ms | jax ms | speedup vs best |",
        "|---|---:|---:|---:|---:|",
    ]
    speedups = []
    for case in cases:
        t = time_case(case, args.rounds)
        others = [t[n] for n in ("torch", "jax") if n in t]
        speedup = min(others) / t["conv1d_rs"]
        speedups.append(speedup)
        note = f" ({'; '.join(f'{k}: {v}' for k, v in t['notes'].items())})" if t["notes"] else ""
        row = (
            f"| {case['name']} | {t['conv1d_rs']:.3g} | {t.get('torch', float('nan')):.3g} | "
            f"{t.get('jax', float('nan')):.3g} | {speedup:.2f}x{note} |"
        )
        print(row, flush=True)
        lines.append(row)
    geo = float(np.exp(np.mean(np.log(speedups))))
    lines += [
        "",
        f"Geometric-mean speedup vs the best of torch and jax: **{geo:.2f}x**; "
        f"slower on {sum(s < 1 for s in speedups)} of {len(speedups)} shapes.",
    ]
    print(lines[-1])
    out = C.HERE / "results" / "backward.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
