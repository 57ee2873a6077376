//! Depthwise convolution of channels_first input with stride 1: each channel's steps are
//! contiguous in memory, so the kernel vectorises along steps and reads and writes whole
//! rows in order. The channels_last kernel would have to transpose every tile in and out.

use super::depthwise::DepthwiseWeights;
use super::{for_each_item, Element, SharedOut};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};
use std::mem::MaybeUninit;

/// Output steps per work item: a segment of one channel's row, with its input in L1.
const SEGMENT: usize = 2048;
/// Bytes of output steps whose sums stay in registers over all taps: eight AVX2 registers,
/// enough independent sums to hide the multiply-add's latency (four measured 19-30% slower).
const BLOCK_BYTES: usize = 256;
/// Most output steps of a block (float32's).
const MAX_BLOCK: usize = BLOCK_BYTES / 4;
/// Longest kernel span this path takes, which bounds a segment's input copy.
const MAX_SPAN: usize = 4096;

/// True when the along-steps kernel applies: channels_first, stride 1, steps contiguous.
pub fn applies<T>(geo: &Geometry, x: &ArrayView3<T>) -> bool {
    geo.data_format == DataFormat::ChannelsFirst && geo.strides == 1 && x.strides()[1] == 1 && geo.halo() < MAX_SPAN
}

/// Runs the depthwise convolution of `x`, viewed as `(batch, steps, channels)` over
/// channels_first memory, into `out` (standard layout of `geo.output_shape()`).
pub fn run<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    weights: &DepthwiseWeights<T>,
    bias: Option<ArrayView1<T>>,
    fused: bool,
    parallel: bool,
    out: &mut [MaybeUninit<T>],
) {
    let channels = geo.in_channels;
    let segments = geo.out_steps.div_ceil(SEGMENT);
    let span = geo.halo() + 1;
    // The input a segment reads, rounded up so the last register block reads inside it.
    let window = SEGMENT.min(geo.out_steps).div_ceil(MAX_BLOCK) * MAX_BLOCK + span - 1;
    let out_ptr = SharedOut(out.as_mut_ptr().cast::<T>());
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    for_each_item::<T, _>(geo.batch * channels * segments, window + geo.kernel_size, parallel, |item, scratch| {
        let (row, segment) = (item / segments, item % segments);
        let (n, c) = (row / channels, row % channels);
        let t0 = segment * SEGMENT;
        let len = SEGMENT.min(geo.out_steps - t0);
        let (input, taps) = scratch.split_at_mut(window);
        copy_window(geo, &x, n, c, t0, input);
        for (j, w) in taps.iter_mut().enumerate() {
            *w = weights.data[j * channels + c];
        }
        let b = bias.map_or(T::zero(), |b| b[c]);
        // SAFETY: steps t0..t0 + len of channel c of batch item n are this item's alone.
        let out_row = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add((n * channels + c) * geo.out_steps + t0).cast::<MaybeUninit<T>>(), len) };
        let taps = &taps[..geo.kernel_size];
        #[cfg(target_arch = "x86_64")]
        if fused {
            // SAFETY: `fused` is only true when AVX2 and FMA were detected.
            unsafe { segment_fma(input, taps, geo.dilation_rate, b, out_row) };
            return;
        }
        let _ = fused;
        segment_sums::<T, false>(input, taps, geo.dilation_rate, b, out_row);
    });
}

/// Copies the input steps a segment from output step `t0` reads, zero where padded.
fn copy_window<T: Element>(geo: &Geometry, x: &ArrayView3<T>, n: usize, c: usize, t0: usize, input: &mut [T]) {
    let first = geo.first_input_step(t0);
    let lo = (-first).clamp(0, input.len() as isize) as usize;
    let hi = (geo.steps as isize - first).clamp(lo as isize, input.len() as isize) as usize;
    input[..lo].fill(T::zero());
    input[hi..].fill(T::zero());
    if hi > lo {
        // SAFETY: input steps first + lo .. first + hi lie inside the row, which is contiguous.
        let src = unsafe { std::slice::from_raw_parts(x.uget([n, (first + lo as isize) as usize, c]) as *const T, hi - lo) };
        input[lo..hi].copy_from_slice(src);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn segment_fma<T: Element>(input: &[T], taps: &[T], dilation: usize, bias: T, out: &mut [MaybeUninit<T>]) {
    segment_sums::<T, true>(input, taps, dilation, bias, out);
}

/// [`block_sums`] over blocks of [`BLOCK_BYTES`]: 64 float32 steps or 32 float64 ones.
#[inline(always)]
fn segment_sums<T: Element, const FUSED: bool>(input: &[T], taps: &[T], dilation: usize, bias: T, out: &mut [MaybeUninit<T>]) {
    if std::mem::size_of::<T>() == 8 {
        block_sums::<T, FUSED, { MAX_BLOCK / 2 }>(input, taps, dilation, bias, out);
    } else {
        block_sums::<T, FUSED, MAX_BLOCK>(input, taps, dilation, bias, out);
    }
}

/// `out[t] = bias + sum_j taps[j] * input[t + j * dilation]`, the taps summed in order.
#[inline(always)]
fn block_sums<T: Element, const FUSED: bool, const BLOCK: usize>(input: &[T], taps: &[T], dilation: usize, bias: T, out: &mut [MaybeUninit<T>]) {
    let mut start = 0;
    while start < out.len() {
        // Every block reads BLOCK steps: the window is rounded up for the last one.
        let mut acc = [T::zero(); BLOCK];
        for (j, &w) in taps.iter().enumerate() {
            let x = &input[start + j * dilation..][..BLOCK];
            for (a, &v) in acc.iter_mut().zip(x) {
                *a = if FUSED { v.mul_add(w, *a) } else { *a + v * w };
            }
        }
        for (o, a) in out[start..].iter_mut().zip(acc) {
            o.write(a + bias);
        }
        start += BLOCK;
    }
}
