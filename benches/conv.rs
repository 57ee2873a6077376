//! Criterion benchmarks of the Rust core on shapes of `benches/suite.json`.
//!
//! ```text
//! cargo bench --bench conv                  # all
//! cargo bench --bench conv -- tcn_causal    # a filter
//! cargo bench --bench conv -- --quick       # shorter
//! ```
//!
//! The main entry is the prepared kernel (weights packed once, as a layer holds them);
//! `conv1d` (packing on every call) is timed on one shape to show that overhead.
//! Throughput is given in elements = FLOPs, so criterion's "elem/s" reads as FLOP/s.
//! Threads: the rayon pool, `RAYON_NUM_THREADS` (2 for the suite).

use std::time::Duration;

use conv1d_rs::{conv1d, ComputeOptions, Conv1dParams, Element, Padding, PreparedKernel};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{Array1, Array3};
use num_traits::FromPrimitive;

/// One suite case, channels_last.
struct Case {
    name: &'static str,
    batch: usize,
    steps: usize,
    in_channels: usize,
    filters: usize,
    kernel_size: usize,
    strides: usize,
    dilation_rate: usize,
    groups: usize,
    padding: Padding,
}

// A spread of the suite: tiny and streaming calls (overhead), GEMM-shaped, dilated
// causal, strided, grouped and depthwise; the largest suite shapes are left to report.py.
// One line per case, like the rows of the suite.
#[rustfmt::skip]
const CASES: &[Case] = &[
    Case { name: "seed_tiny", batch: 1, steps: 56, in_channels: 1, filters: 16, kernel_size: 3, strides: 1, dilation_rate: 1, groups: 1, padding: Padding::Valid },
    Case { name: "stream_b1", batch: 1, steps: 128, in_channels: 64, filters: 64, kernel_size: 3, strides: 1, dilation_rate: 1, groups: 1, padding: Padding::Same },
    Case { name: "tcn_causal", batch: 16, steps: 1024, in_channels: 128, filters: 128, kernel_size: 3, strides: 1, dilation_rate: 4, groups: 1, padding: Padding::Causal },
    Case { name: "wavenet", batch: 4, steps: 8192, in_channels: 64, filters: 64, kernel_size: 2, strides: 1, dilation_rate: 16, groups: 1, padding: Padding::Causal },
    Case { name: "w2v_first", batch: 4, steps: 16000, in_channels: 1, filters: 512, kernel_size: 10, strides: 5, dilation_rate: 1, groups: 1, padding: Padding::Valid },
    Case { name: "grouped8", batch: 8, steps: 1024, in_channels: 256, filters: 256, kernel_size: 3, strides: 1, dilation_rate: 1, groups: 8, padding: Padding::Same },
    Case { name: "depthwise31", batch: 8, steps: 1024, in_channels: 256, filters: 256, kernel_size: 31, strides: 1, dilation_rate: 1, groups: 256, padding: Padding::Same },
];

impl Case {
    fn params(&self) -> Conv1dParams {
        Conv1dParams::new()
            .strides(self.strides)
            .dilation_rate(self.dilation_rate)
            .groups(self.groups)
            .padding(self.padding)
    }

    /// Multiply-adds x 2 of one forward pass.
    fn flops(&self) -> u64 {
        let out = conv1d_rs::output_length(
            self.steps,
            self.kernel_size,
            self.strides,
            self.dilation_rate,
            self.padding,
        )
        .unwrap();
        2 * (self.batch * out * self.filters * self.kernel_size * (self.in_channels / self.groups))
            as u64
    }

    /// Deterministic inputs in [-1, 1): a benchmark needs no random-number crate.
    fn inputs<T: Element + FromPrimitive>(&self) -> (Array3<T>, Array3<T>, Array1<T>) {
        let fill = |i: usize| {
            let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            T::from_f64(h as f64 / (1u64 << 23) as f64 - 1.0).unwrap()
        };
        let mut n = 0;
        let mut next = || {
            n += 1;
            fill(n)
        };
        let x = Array3::from_shape_fn((self.batch, self.steps, self.in_channels), |_| next());
        let kernel = Array3::from_shape_fn(
            (
                self.kernel_size,
                self.in_channels / self.groups,
                self.filters,
            ),
            |_| next(),
        );
        let bias = Array1::from_shape_fn(self.filters, |_| next());
        (x, kernel, bias)
    }
}

fn bench_prepared<T: Element + FromPrimitive>(c: &mut Criterion, dtype: &str, cases: &[&Case]) {
    let mut group = c.benchmark_group(format!("prepared_{dtype}"));
    for case in cases {
        let (x, kernel, bias) = case.inputs::<T>();
        let prepared =
            PreparedKernel::new(kernel.view(), case.groups, &ComputeOptions::default()).unwrap();
        let params = case.params();
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(BenchmarkId::from_parameter(case.name), |b| {
            b.iter(|| {
                prepared
                    .forward(x.view(), Some(bias.view()), &params)
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let all: Vec<&Case> = CASES.iter().collect();
    bench_prepared::<f32>(c, "f32", &all);
    // f64 on one GEMM-shaped case: the same code path at half the SIMD width.
    let tcn: Vec<&Case> = CASES.iter().filter(|c| c.name == "tcn_causal").collect();
    bench_prepared::<f64>(c, "f64", &tcn);

    let mut group = c.benchmark_group("plain_f32");
    for case in &tcn {
        let (x, kernel, bias) = case.inputs::<f32>();
        let params = case.params();
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(BenchmarkId::from_parameter(case.name), |b| {
            b.iter(|| conv1d(x.view(), kernel.view(), Some(bias.view()), &params).unwrap())
        });
    }
    group.finish();
}

// Short runs: the machine has 2 cores shared with builds, and the suite has many shapes.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = conv;
    config = config();
    targets = benches
}
criterion_main!(conv);
