//! Peak extra memory of one forward call for each shape of `benches/suite.json`: the most
//! bytes the call holds at once besides its input, its output and the packed kernel.
//!
//!     cargo run --release --example memory            # a Markdown table on stdout

use conv1d_rs::memory::CountingAllocator;
use conv1d_rs::{ComputeOptions, Conv1dParams, DataFormat, Padding, PreparedKernel};
use ndarray::Array3;
use serde_json::Value;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator::new();

fn field(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap_or_else(|| panic!("suite case without {key}")) as usize
}

fn mib(bytes: usize) -> String {
    format!("{:.2}", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/suite.json");
    let suite: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read suite.json")).expect("parse suite.json");
    println!("| case | input MiB | output MiB | packed kernel MiB | extra KiB | extra / input |");
    println!("|---|---:|---:|---:|---:|---:|");
    for case in suite["cases"].as_array().expect("cases") {
        let (batch, steps, channels) = (field(case, "batch"), field(case, "steps"), field(case, "in_channels"));
        let (filters, kernel_size, groups) = (field(case, "filters"), field(case, "kernel_size"), field(case, "groups"));
        let padding = match case["padding"].as_str() {
            Some("same") => Padding::Same,
            Some("causal") => Padding::Causal,
            _ => Padding::Valid,
        };
        let params = Conv1dParams::new()
            .strides(field(case, "strides"))
            .dilation_rate(field(case, "dilation_rate"))
            .groups(groups)
            .padding(padding)
            .data_format(DataFormat::ChannelsLast);
        let x = Array3::from_shape_fn((batch, steps, channels), |(n, t, c)| ((n + t + c) % 7) as f32);
        let kernel = Array3::from_shape_fn((kernel_size, channels / groups, filters), |(j, c, o)| ((j + c + o) % 5) as f32);
        let before_kernel = HEAP.live();
        let prepared = PreparedKernel::new(kernel.view(), groups, &ComputeOptions::default()).expect("kernel");
        // Warm up: the thread pool starts and the FFT path caches its kernel spectra.
        let mut out = prepared.forward(x.view(), None, &params).expect("forward");
        let packed = HEAP.live() - out.len() * 4 - before_kernel;
        let before = HEAP.reset_peak();
        prepared.forward_into(x.view(), None, &params, out.view_mut()).expect("forward");
        let extra = HEAP.peak() - before;
        let name = case["name"].as_str().unwrap_or("?");
        let input = x.len() * 4;
        println!(
            "| {name} | {} | {} | {} | {} | {:.3} |",
            mib(input),
            mib(out.len() * 4),
            mib(packed),
            extra / 1024,
            extra as f64 / input as f64
        );
    }
}
