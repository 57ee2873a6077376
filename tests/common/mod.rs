//! Cases and input values shared by the tests that compare fast paths with the reference loops.

use conv1d_rs::{Conv1dParams, DataFormat, Padding};
use ndarray::Array3;
use proptest::prelude::*;
use std::ops::Range;

#[derive(Debug, Clone)]
pub struct Case {
    pub batch: usize,
    pub steps: usize,
    pub groups: usize,
    pub in_per_group: usize,
    pub filters_per_group: usize,
    pub kernel_size: usize,
    pub params: Conv1dParams,
    pub use_bias: bool,
    pub seed: u64,
}

impl Case {
    /// A case with bias and seed 3.
    pub fn new(
        batch: usize,
        steps: usize,
        groups: usize,
        cg: usize,
        fg: usize,
        k: usize,
        params: Conv1dParams,
    ) -> Self {
        Case {
            batch,
            steps,
            groups,
            in_per_group: cg,
            filters_per_group: fg,
            kernel_size: k,
            params,
            use_bias: true,
            seed: 3,
        }
    }
}

/// Random shapes and options; the tests differ only in the range of channels per group.
pub fn case(in_per_group: Range<usize>) -> impl Strategy<Value = Case> {
    (
        (0usize..3, 0usize..40, 1usize..5, in_per_group, 1usize..20, 1usize..8),
        (1usize..5, 1usize..5, 0usize..3, any::<bool>(), any::<bool>(), any::<u64>()),
    )
        .prop_map(|((batch, steps, groups, cg, fg, k), (s, d, pad, first, use_bias, seed))| {
            let params = Conv1dParams::new()
                .strides(s)
                .dilation_rate(d)
                .groups(groups)
                .padding([Padding::Valid, Padding::Same, Padding::Causal][pad])
                .data_format(if first { DataFormat::ChannelsFirst } else { DataFormat::ChannelsLast });
            Case { use_bias, seed, ..Case::new(batch, steps, groups, cg, fg, k, params) }
        })
}

/// One step of the xorshift64 generator behind every test value.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Small integers as floats: every sum is exact, so every path must agree to the bit.
pub fn integers(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed | 1;
    (0..len).map(|_| (xorshift(&mut state) % 9) as f64 - 4.0).collect()
}

/// Input and kernel of a case, filled by `fill` from seeds derived from the case's.
pub fn input_and_kernel(c: &Case, fill: fn(usize, u64) -> Vec<f64>) -> (Array3<f64>, Array3<f64>) {
    let channels = c.groups * c.in_per_group;
    let filters = c.groups * c.filters_per_group;
    let shape = match c.params.data_format {
        DataFormat::ChannelsLast => (c.batch, c.steps, channels),
        DataFormat::ChannelsFirst => (c.batch, channels, c.steps),
    };
    let x = Array3::from_shape_vec(shape, fill(c.batch * c.steps * channels, c.seed)).unwrap();
    let kshape = (c.kernel_size, c.in_per_group, filters);
    let kernel = Array3::from_shape_vec(kshape, fill(kshape.0 * kshape.1 * kshape.2, c.seed ^ 0x9e37)).unwrap();
    (x, kernel)
}
