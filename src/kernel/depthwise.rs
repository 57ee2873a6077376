//! One filter per input channel (`groups == in_channels == filters`): each output step is a
//! short dot product per channel, so the kernel vectorises across channels instead of
//! filters, where the GEMM path would waste all but one lane of its filter block.

use super::{for_each_item, use_avx2, Element, SharedOut, Simd};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};

/// Weights as `[tap][channel]`.
#[derive(Debug, Clone)]
pub struct DepthwiseWeights<T> {
    pub data: Vec<T>,
    pub kernel_size: usize,
    pub channels: usize,
}

impl<T: Element> DepthwiseWeights<T> {
    /// Packs a Keras-layout depthwise kernel `(kernel_size, 1, channels)`.
    pub fn new(kernel: ArrayView3<T>) -> Self {
        let (kernel_size, _, channels) = kernel.dim();
        let data = kernel.iter().copied().collect();
        DepthwiseWeights { data, kernel_size, channels }
    }
}

/// Output steps per work item.
const STEPS_PER_ITEM: usize = 64;

/// Runs the depthwise convolution into `out` (standard layout of `geo.output_shape()`).
pub fn run<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    weights: &DepthwiseWeights<T>,
    bias: Option<ArrayView1<T>>,
    simd: Simd,
    parallel: bool,
    out: &mut [T],
) {
    let channels = geo.in_channels;
    let tiles = geo.out_steps.div_ceil(STEPS_PER_ITEM);
    let items = geo.batch * tiles;
    if items == 0 {
        return;
    }
    let bias: Vec<T> = match bias {
        Some(b) => b.to_vec(),
        None => vec![T::zero(); channels],
    };
    let out_ptr = SharedOut(out.as_mut_ptr());
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    let fused = use_avx2(simd);
    // Scratch: one accumulator row and one gathered input row.
    for_each_item::<T, _>(items, 2 * channels, parallel, |item, scratch| {
        let (n, tile) = (item / tiles, item % tiles);
        let (acc, gathered) = scratch.split_at_mut(channels);
        for t in tile * STEPS_PER_ITEM..((tile + 1) * STEPS_PER_ITEM).min(geo.out_steps) {
            acc.fill(T::zero());
            let first = geo.first_input_step(t);
            for j in 0..geo.kernel_size {
                let step = first + (j * geo.dilation_rate) as isize;
                if step < 0 || step as usize >= geo.steps {
                    continue;
                }
                let lane = x.slice(ndarray::s![n, step as usize, ..]);
                let row: &[T] = match lane.to_slice() {
                    Some(row) => row,
                    None => {
                        for (dst, &v) in gathered.iter_mut().zip(lane.iter()) {
                            *dst = v;
                        }
                        gathered
                    }
                };
                let w = &weights.data[j * channels..][..channels];
                accumulate(acc, row, w, fused);
            }
            for c in 0..channels {
                let index = match geo.data_format {
                    DataFormat::ChannelsLast => (n * geo.out_steps + t) * channels + c,
                    DataFormat::ChannelsFirst => (n * channels + c) * geo.out_steps + t,
                };
                // SAFETY: step t of batch item n belongs to this work item alone; index is in bounds.
                unsafe { *out_ptr.get().add(index) = acc[c] + bias[c] };
            }
        }
    });
}

/// `acc += row * w`, element-wise; fused multiply-add when the CPU has it.
fn accumulate<T: Element>(acc: &mut [T], row: &[T], w: &[T], fused: bool) {
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: `fused` is only true when AVX2 and FMA were detected.
        unsafe { accumulate_fma(acc, row, w) };
        return;
    }
    let _ = fused;
    for ((a, &r), &k) in acc.iter_mut().zip(row).zip(w) {
        *a = *a + r * k;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_fma<T: Element>(acc: &mut [T], row: &[T], w: &[T]) {
    for ((a, &r), &k) in acc.iter_mut().zip(row).zip(w) {
        *a = r.mul_add(k, *a);
    }
}
