//! Extra memory of a forward call is bounded by tiles: it does not grow with the input.
//! One test function, since the heap counter is shared by every thread of this binary.

use conv1d_rs::memory::CountingAllocator;
use conv1d_rs::{Algorithm, ComputeOptions, Conv1dParams, Padding, PreparedKernel};
use ndarray::Array3;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator::new();

/// Bytes a call allocates besides its (preallocated) output, after a warm-up call has
/// started the thread pool and filled the kernel's caches.
fn extra_bytes(prepared: &PreparedKernel<f32>, x: &Array3<f32>, params: &Conv1dParams) -> usize {
    let mut out = prepared.forward(x.view(), None, params).unwrap();
    let before = HEAP.reset_peak();
    prepared.forward_into(x.view(), None, params, out.view_mut()).unwrap();
    HEAP.peak() - before
}

#[test]
fn forward_extra_memory_does_not_grow_with_the_input() {
    let cases = [
        // (channels, filters, kernel_size, groups, params, algorithm)
        (64, 64, 5, 1, Conv1dParams::new().padding(Padding::Same), Algorithm::Gemm),
        (48, 32, 3, 1, Conv1dParams::new().strides(2).dilation_rate(3).padding(Padding::Causal), Algorithm::Gemm),
        (64, 64, 7, 64, Conv1dParams::new().groups(64).padding(Padding::Same), Algorithm::Depthwise),
        (8, 8, 64, 1, Conv1dParams::new().padding(Padding::Same), Algorithm::Fft),
    ];
    for (channels, filters, kernel_size, groups, params, algorithm) in cases {
        let kernel = Array3::from_shape_fn((kernel_size, channels / groups, filters), |(j, c, o)| (j + c + o) as f32 * 1e-3);
        let options = ComputeOptions { algorithm, ..ComputeOptions::default() };
        let prepared = PreparedKernel::new(kernel.view(), groups, &options).unwrap();
        let extra: Vec<usize> = [1usize << 14, 1 << 17]
            .iter()
            .map(|&steps| {
                let x = Array3::from_shape_fn((2, steps, channels), |(n, t, c)| ((n + t + c) % 7) as f32);
                extra_bytes(&prepared, &x, &params)
            })
            .collect();
        let input_bytes = 2 * (1 << 17) * channels * 4;
        // Eight times the input, and no more than a few hundred KiB more extra memory (tiles
        // are sized by the kernel and the caches, not by the sequence).
        assert!(extra[1] <= extra[0] + (256 << 10), "{algorithm:?}: extra memory grew from {} to {} bytes", extra[0], extra[1]);
        assert!(extra[1] < input_bytes / 4, "{algorithm:?}: {} extra bytes for a {input_bytes}-byte input", extra[1]);
    }
}
