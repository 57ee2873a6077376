"""Side-by-side comparison of conv1d_rs with other frameworks on the benchmark suite.

    python benches/report.py                       # full suite, writes benches/results/report.md + speedup.png
    python benches/report.py --quick               # fewer rounds, shorter samples
    python benches/report.py --cases textcnn,wavenet --rounds 21 --json
    python benches/report.py --suite benches/extra.json --out benches/results/extra   # shapes outside the suite

All frameworks run in this one process on 2 threads. For each case the frameworks are
warmed up, then timed in interleaved rounds (a new order each round, and one untimed call
before each sample) so that a change in machine load hits all of them alike; a framework's
time is the median over rounds of the per-call time of a sample of back-to-back calls. The
AVX2 FMA peak is measured at the start and the end of the run, since on a shared machine it
moves with the load.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import competitors as C  # sets the thread-count variables before any framework loads

RESULTS = C.HERE / "results"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def measure_peak(seconds: float) -> float:
    try:
        from conv1d_rs._core import fma_peak_gflops

        return float(fma_peak_gflops(seconds, C.THREADS))
    except ImportError:
        return float("nan")


def warm_up(fn, min_calls: int, min_seconds: float) -> float:
    """Calls ``fn`` until both limits are reached; returns the fastest call, in seconds."""
    best = math.inf
    calls = 0
    start = time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        calls += 1
        if calls >= 1000:
            break
    return best


def time_case(case: dict, frameworks: list[str], args) -> dict:
    x, kernel, bias = C.make_inputs(case)
    built: dict[str, C.Competitor] = {}
    skipped: dict[str, str] = {}
    for fw in frameworks:
        try:
            comp = C.make(fw, case, x, kernel, bias)
        except Exception as e:  # noqa: BLE001  (a framework that cannot run a case is reported, not fatal)
            comp = C.Competitor(fw, None, reason=f"{type(e).__name__}: {e}"[:200])
        if comp.fn is None:
            skipped[fw] = comp.reason
        else:
            built[fw] = comp

    reference = built["conv1d_rs"].output if "conv1d_rs" in built else None
    mismatch: dict[str, str] = {}
    if reference is not None:
        for fw, comp in built.items():
            err = C.check_output(fw, comp.output, reference)
            if err is not None:
                mismatch[fw] = err
    for comp in built.values():
        comp.output = None  # free the outputs before timing

    reps: dict[str, int] = {}
    for fw, comp in built.items():
        C.settle()
        fastest = warm_up(comp.fn, args.warmup_calls, args.warmup_seconds)
        reps[fw] = max(1, math.ceil(args.sample_seconds / max(fastest, 1e-7)))

    samples: dict[str, list[float]] = {fw: [] for fw in built}
    order = list(built)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(args.rounds):
            for fw in C.round_order(order, r):
                fn, n = built[fw].fn, reps[fw]
                C.settle()
                fn()  # untimed: the sample starts from this framework's own state, not the last one's
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[fw].append((time.perf_counter() - t0) / n)
    finally:
        if gc_was_enabled:
            gc.enable()

    result = {
        "name": case["name"],
        "shape": C.shape_summary(case),
        "data_format": case["data_format"],
        "gflop": case["gflop"],
        "algorithm": built["conv1d_rs"].detail if "conv1d_rs" in built else None,
        "reps": reps,
        "samples_ms": {fw: [s * 1e3 for s in v] for fw, v in samples.items()},
        "median_ms": {fw: statistics.median(v) * 1e3 for fw, v in samples.items()},
        "min_ms": {fw: min(v) * 1e3 for fw, v in samples.items()},
        "skipped": skipped,
        "mismatch": mismatch,
    }
    valid = {fw: t for fw, t in result["median_ms"].items() if fw in C.COMPETITORS and fw not in mismatch}
    if valid:
        best = min(valid, key=valid.get)
        result["best_competitor"] = best
        result["best_competitor_ms"] = valid[best]
        if "conv1d_rs" in result["median_ms"]:
            result["speedup"] = valid[best] / result["median_ms"]["conv1d_rs"]
    if "conv1d_rs" in result["median_ms"]:
        result["gflops"] = case["gflop"] / (result["median_ms"]["conv1d_rs"] * 1e-3)
    return result


def speedups_over(cases: list[dict], frameworks: tuple[str, ...]) -> list[float]:
    """Per case, the best time of `frameworks` (those that ran) over conv1d_rs's."""
    speedups = []
    for r in cases:
        times = [r["median_ms"][fw] for fw in frameworks if r["median_ms"].get(fw)]
        if times and r["median_ms"].get("conv1d_rs"):
            speedups.append(min(times) / r["median_ms"]["conv1d_rs"])
    return speedups


def geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def fmt_ms(v) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def write_markdown(run: dict, path: Path) -> None:
    cases = run["cases"]
    frameworks = run["frameworks"]
    comps = [fw for fw in C.COMPETITORS if fw in frameworks]
    peak = run["peak_gflops"]
    lines = []
    lines.append("# conv1d_rs against other frameworks: Conv1D forward, float32, 2 threads")
    lines.append("")
    lines.append(
        f"Machine: {run['cpu']}, {run['cpus']} logical CPUs (AVX2+FMA: {'yes' if run['avx2_fma'] else 'no'}, "
        f"AVX-512: {'yes' if run.get('avx512') else 'no'}); "
        f"{run['threads']} threads for every framework (conv1d_rs rayon pool: {run['conv1d_rs_threads']}). "
        f"Load average at start {run['load_start']}, at end {run['load_end']}."
    )
    lines.append("")
    lines.append(
        f"Date: {run['date']}. Python {run['python']}. "
        + ", ".join(f"{k} {v}" for k, v in run["versions"].items())
        + "."
    )
    lines.append("")
    lines.append(
        f"Measured AVX2 FMA peak on {run['threads']} threads: {run['peak_start']:.0f} GFLOP/s at the start, "
        f"{run['peak_end']:.0f} GFLOP/s at the end; % of peak below is against {peak:.0f} GFLOP/s, the higher of the two."
    )
    lines.append("")
    if run["peak_start"] > 0 and not 0.75 <= run["peak_end"] / run["peak_start"] <= 1.33:
        lines.append(
            "**The FMA peak moved by more than a quarter during the run: the machine's load changed, "
            "so these figures are less steady than usual.**"
        )
        lines.append("")
    lines.append(
        f"Method: all frameworks in one process, interleaved over {run['rounds']} rounds "
        f"(a new, seeded order each round) after a warm-up, waiting before each sample until the previous framework's "
        f"worker threads have stopped spinning and making one untimed call; each sample is at least {run['sample_seconds'] * 1e3:.0f} ms "
        "of back-to-back calls; times are the median per-call time in ms. conv1d_rs is the prepared kernel "
        "(weights packed once, as the layer holds them); *plain* is `conv1d_rs.conv1d`, which packs them on every call. "
        "torch and ort take NCW input (their native layout, transposed once outside the timing); jax and tf take NWC. "
        + (
            "conv1d_rs takes these cases `channels_first` (NCW, transposed once outside the timing). "
            if any(c.get("data_format") == "channels_first" for c in cases)
            else ""
        )
        + "Keras `same`/`causal` padding is reproduced exactly and is inside the timed call. "
        f"Every output matches conv1d_rs within {C.RTOL:g} of the output's magnitude unless marked. "
        "Speedup = best competitor time / conv1d_rs time (above 1: conv1d_rs is faster). "
        "GFLOP/s counts the FLOPs of the direct convolution (2 x multiply-adds, the suite's `gflop`), so on the "
        "`fft` path, which does fewer, it can exceed the FMA peak; *path* is the algorithm conv1d_rs took."
    )
    lines.append("")
    header = ["case", "shape (NxLxC->F)", "GFLOP", "conv1d_rs ms", "plain ms"] + [f"{fw} ms" for fw in comps]
    header += ["best competitor ms", "speedup", "conv1d_rs GFLOP/s", "% of peak", "path"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 3) + ["---"]) + "|")
    for r in cases:
        med = r["median_ms"]
        row = [
            r["name"],
            r["shape"],
            f"{r['gflop']:.3g}",
            f"**{fmt_ms(med.get('conv1d_rs'))}**",
            fmt_ms(med.get("conv1d_rs_plain")),
        ]
        for fw in comps:
            if fw in med:
                cell = fmt_ms(med[fw])
                if fw in r["mismatch"]:
                    cell += " (wrong)"
            else:
                cell = "skip"
            row.append(cell)
        if "best_competitor" in r:
            row.append(f"{fmt_ms(r['best_competitor_ms'])} ({r['best_competitor']})")
        else:
            row.append("–")
        sp = r.get("speedup")
        row.append("–" if sp is None else (f"{sp:.2f}x" if sp >= 1 else f"**{sp:.2f}x**"))
        gf = r.get("gflops")
        row.append("–" if gf is None else f"{gf:.1f}")
        row.append("–" if gf is None or not peak else f"{100 * gf / peak:.1f}%")
        row.append(r["algorithm"] or "–")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    speedups = [r["speedup"] for r in cases if "speedup" in r]
    wins = sum(s >= 1 for s in speedups)
    lines.append(
        f"**Geometric-mean speedup vs the best competitor: {geomean(speedups):.2f}x** "
        f"over {len(speedups)} cases (conv1d_rs faster in {wins}, slower in {len(speedups) - wins})."
    )
    lines.append("")
    per_fw = []
    for fw in comps:
        ratios = speedups_over(cases, (fw,))
        if ratios:
            per_fw.append(f"{fw} {geomean(ratios):.2f}x")
    if per_fw:
        lines.append("Geometric-mean speedup vs each framework: " + ", ".join(per_fw) + ".")
        lines.append("")
    without_tf = speedups_over(cases, ("torch", "jax", "ort"))
    if without_tf:
        lines.append(
            f"Geometric-mean speedup vs the best of PyTorch, JAX and ONNX Runtime only (TensorFlow left out): "
            f"{geomean(without_tf):.2f}x."
        )
        lines.append("")
    losses = sorted((r for r in cases if r.get("speedup", 1) < 1), key=lambda r: r["speedup"])
    if losses:
        lines.append("Cases where conv1d_rs is slower than the best competitor:")
        lines.append("")
        for r in losses:
            lines.append(
                f"- {r['name']} ({r['shape']}): {fmt_ms(r['median_ms']['conv1d_rs'])} ms vs "
                f"{fmt_ms(r['best_competitor_ms'])} ms for {r['best_competitor']}, "
                f"{1 / r['speedup']:.2f}x slower (path: {r['algorithm']})."
            )
        lines.append("")
    notes = []
    for r in cases:
        for fw, why in r["skipped"].items():
            notes.append(f"- {r['name']}: {fw} skipped: {why}")
        for fw, why in r["mismatch"].items():
            notes.append(f"- {r['name']}: {fw} output differs: {why}")
    if notes:
        lines.append("Notes:")
        lines.append("")
        lines.extend(dict.fromkeys(notes))
        lines.append("")
    lines.append("![speedup vs best competitor, and GFLOP/s vs the measured FMA peak](speedup.png)")
    lines.append("")
    lines.append("## Peak extra memory per call")
    lines.append("")
    if run.get("memory_table"):
        lines.append(
            "The most heap a conv1d_rs forward call holds at once besides its input, its output and the "
            "packed kernel (input tiles, FFT blocks, bias blocks), counted by a wrapping allocator in "
            "`cargo run --release --example memory` on the same machine and threads, after a warm-up call:"
        )
        lines.append("")
        lines.append(run["memory_table"].strip())
    else:
        lines.append("Not measured in this run (`cargo run --release --example memory` did not run).")
    lines.append("")
    path.write_text("\n".join(lines))


def memory_table() -> str | None:
    """The table of `examples/memory.rs`, or None when cargo is missing or the build fails."""
    try:
        done = subprocess.run(
            ["cargo", "run", "--release", "--quiet", "--example", "memory"],
            cwd=C.HERE.parent,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.startswith("|") else None


def write_plot(run: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = [r for r in run["cases"] if "speedup" in r]
    if not cases:
        return False
    names = [r["name"] for r in cases]
    pos = list(range(len(cases)))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.75 * len(cases) + 2), 9), sharex=True)

    speedups = [r["speedup"] for r in cases]
    colors = ["tab:green" if s >= 1 else "tab:red" for s in speedups]
    ax1.bar(pos, speedups, color=colors)
    ax1.set_yscale("log")
    ax1.axhline(1.0, color="black", linewidth=1)
    for p, s, r in zip(pos, speedups, cases):
        ax1.annotate(
            f"{s:.2f}\n{r['best_competitor']}",
            (p, s),
            ha="center",
            va="bottom" if s >= 1 else "top",
            fontsize=7,
            xytext=(0, 2 if s >= 1 else -2),
            textcoords="offset points",
        )
    ax1.set_ylabel("speedup vs best competitor (log)")
    ax1.set_title(
        f"conv1d_rs vs best of {', '.join(fw for fw in C.COMPETITORS if fw in run['frameworks'])}, "
        f"{run['threads']} threads; geometric mean {geomean(speedups):.2f}x"
    )
    lo, hi = min(speedups), max(speedups)
    ax1.set_ylim(min(lo, 1) / 1.6, max(hi, 1) * 1.6)

    width = 0.4
    ours = [r["gflops"] for r in cases]
    best = [r["gflop"] / (r["best_competitor_ms"] * 1e-3) for r in cases]
    ax2.bar([p - width / 2 for p in pos], ours, width, label="conv1d_rs", color="tab:blue")
    ax2.bar([p + width / 2 for p in pos], best, width, label="best competitor", color="tab:gray")
    if run["peak_gflops"] > 0:  # 0: no AVX2/FMA, nothing to compare with
        ax2.axhline(
            run["peak_gflops"],
            color="tab:orange",
            linestyle="--",
            label=f"measured FMA peak ({run['peak_start']:.0f} / {run['peak_end']:.0f} GFLOP/s, start / end)",
        )
    ax2.set_yscale("log")
    # Room above the peak line for the legend.
    ax2.set_ylim(min(ours + best) / 2, max(ours + best + [run["peak_gflops"]]) * 4)
    ax2.set_ylabel("direct-convolution GFLOP/s (log)")
    ax2.legend(fontsize=8, loc="upper left", ncol=3)
    ax2.set_xticks(pos)
    ax2.set_xticklabels(names, rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", help="comma-separated case names (default: the whole suite)")
    parser.add_argument(
        "--frameworks", default=",".join(C.FRAMEWORKS), help="comma-separated, of: " + ", ".join(C.FRAMEWORKS)
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per case (default 15, 5 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter samples, for a smoke run")
    parser.add_argument("--json", action="store_true", help="also write the raw timings to results/report.json")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output directory (default benches/results)")
    parser.add_argument("--suite", type=Path, default=C.SUITE_PATH)
    parser.add_argument(
        "--from-json", type=Path, help="rewrite report.md and the plot from a saved report.json, timing nothing"
    )
    args = parser.parse_args(argv)

    if args.from_json:
        run = json.loads(args.from_json.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        write_markdown(run, args.out / "report.md")
        write_plot(run, args.out / "speedup.png")
        print(f"wrote {args.out / 'report.md'}, {args.out / 'speedup.png'}")
        return 0

    args.rounds = args.rounds or (5 if args.quick else 15)
    args.sample_seconds = 0.005 if args.quick else 0.025
    args.warmup_calls = 2 if args.quick else 3
    args.warmup_seconds = 0.02 if args.quick else 0.1
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    suite = C.load_suite(args.suite)
    cases = suite["cases"]
    if args.cases:
        wanted = [n.strip() for n in args.cases.split(",") if n.strip()]
        known = {c["name"] for c in cases}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        cases = [c for c in cases if c["name"] in wanted]
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    bad = [f for f in frameworks if f not in C.FRAMEWORKS]
    if bad:
        parser.error(f"unknown framework(s) {', '.join(bad)}")
    if "conv1d_rs" not in frameworks:
        frameworks.insert(0, "conv1d_rs")  # the reference of the correctness check and the speedup

    try:
        from conv1d_rs._core import has_avx2_fma, has_avx512, num_threads
    except ImportError as e:
        print(f"conv1d_rs is not importable ({e}); run `pip install --no-build-isolation -e .` first", file=sys.stderr)
        return 1

    run = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "avx2_fma": bool(has_avx2_fma()) and {"avx2", "fma"} <= cpu_flags(),
        "avx512": bool(has_avx512()),
        "threads": C.THREADS,
        "conv1d_rs_threads": num_threads(),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "sample_seconds": args.sample_seconds,
        "frameworks": frameworks,
        "load_start": loadavg(),
    }
    print(f"{run['cpu']}, {run['threads']} threads, load {run['load_start']}", flush=True)
    run["peak_start"] = measure_peak(0.5)
    print(f"FMA peak at start: {run['peak_start']:.0f} GFLOP/s", flush=True)

    results = []
    for case in cases:
        t0 = time.perf_counter()
        r = time_case(case, frameworks, args)
        results.append(r)
        med = r["median_ms"]
        cells = "  ".join(f"{fw} {fmt_ms(med[fw])}" for fw in frameworks if fw in med)
        sp = r.get("speedup")
        print(
            f"{case['name']:<18} {cells}  speedup {'-' if sp is None else f'{sp:.2f}x'}  "
            f"[{time.perf_counter() - t0:.0f}s]",
            flush=True,
        )
        for why in r["mismatch"].values():
            print(f"  MISMATCH {why}", flush=True)

    run["peak_end"] = measure_peak(0.5)
    run["load_end"] = loadavg()
    run["peak_gflops"] = max(run["peak_start"], run["peak_end"])
    print(f"FMA peak at end: {run['peak_end']:.0f} GFLOP/s, load {run['load_end']}", flush=True)
    run["versions"] = C.versions()
    run["cases"] = results
    if not args.cases and args.suite == C.SUITE_PATH:
        print("measuring peak extra memory (cargo run --example memory)", flush=True)
        run["memory_table"] = memory_table()

    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(run, args.out / "report.md")
    plotted = write_plot(run, args.out / "speedup.png")
    if args.json:
        with open(args.out / "report.json", "w") as f:
            json.dump(run, f, indent=1)
    speedups = [r["speedup"] for r in results if "speedup" in r]
    print(f"geometric-mean speedup vs best competitor: {geomean(speedups):.2f}x")
    print(
        f"wrote {args.out / 'report.md'}"
        + (f", {args.out / 'speedup.png'}" if plotted else "")
        + (f", {args.out / 'report.json'}" if args.json else "")
    )
    return 1 if any(r["mismatch"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
