//! Long kernels by FFT overlap-save: each block of `n - span + 1` output steps costs a few
//! FFTs of length `n` plus one complex multiply-add per (bin, input channel, filter),
//! instead of `kernel_size` multiply-adds per (step, input channel, filter).
//!
//! The transforms run in f64 whatever the data type: in f32 their rounding error grows with
//! the whole window's magnitude and would exceed what a direct f32 sum gives.
//!
//! Cross-correlation is convolution with the flipped (dilated) kernel `h[m] = w[span-1-m]`:
//! for a segment `s[i] = x_pad[t0 + i]`, the circular convolution `z = s (*) h` gives
//! `z[span - 1 + i] = y[t0 + i]` for `i < n - span + 1`, where no wrap-around reaches.

use super::{for_each_item, Element, SharedOut};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};
use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::mem::MaybeUninit;
use std::sync::Arc;

/// Filters whose outputs are gathered before being written to channels_last rows.
const FILTERS_AT_ONCE: usize = 16;

/// Kernel spectra for one dilation, ready for any input length.
pub struct FftWeights<T: Element> {
    pub dilation_rate: usize,
    n: usize,
    span: usize,
    in_per_group: usize,
    filters_per_group: usize,
    groups: usize,
    /// Real and imaginary parts, each `[group][filter][channel][bin]`, scaled by `1 / n`
    /// (exact: `n` is a power of two). Split so the per-bin products vectorise.
    spectra_re: Vec<f64>,
    spectra_im: Vec<f64>,
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
    element: std::marker::PhantomData<T>,
}

/// FFT length for a kernel spanning `span` steps: a power of two about four spans long,
/// so most of each block is useful output.
pub fn fft_len(span: usize) -> usize {
    (4 * span).next_power_of_two().max(256)
}

/// Estimated cost ratio (FFT / direct) per output step; below 1 the FFT path is faster.
/// Measured on AVX2 machines, an f64 FFT flop costs about 18 times an f32 micro-kernel
/// flop (longkernel: 7.8 ms by FFT against 25 ms direct; sinc251: 24 ms against 16 ms),
/// and half as much against the f64 micro-kernel, which is half as fast.
pub fn relative_cost<T>(geo: &Geometry) -> f64 {
    let span = geo.halo() + 1;
    let n = fft_len(span) as f64;
    let (cg, fg) = (geo.in_per_group() as f64, geo.filters_per_group() as f64);
    let useful = n - span as f64 + 1.0;
    let bins = n / 2.0 + 1.0;
    let fft = (cg + fg) * 2.5 * n * n.log2() + 8.0 * cg * fg * bins;
    let direct = 2.0 * geo.kernel_size as f64 * cg * fg * useful;
    let flop_cost = 18.0 * 4.0 / std::mem::size_of::<T>() as f64;
    flop_cost * fft / direct
}

impl<T: Element> FftWeights<T> {
    /// Transforms a Keras-layout kernel `(kernel_size, in_per_group, filters)` dilated by `dilation_rate`.
    pub fn new(kernel: ArrayView3<T>, groups: usize, dilation_rate: usize) -> Self {
        let (kernel_size, in_per_group, filters) = kernel.dim();
        let fg = filters / groups;
        let span = dilation_rate * (kernel_size - 1) + 1;
        let n = fft_len(span);
        let bins = n / 2 + 1;
        let mut planner = RealFftPlanner::<f64>::new();
        let forward = planner.plan_fft_forward(n);
        let inverse = planner.plan_fft_inverse(n);
        let scale = 1.0 / n as f64;
        let len = groups * fg * in_per_group * bins;
        let (mut spectra_re, mut spectra_im) = (vec![0.0; len], vec![0.0; len]);
        let mut spectrum = vec![Complex::new(0.0, 0.0); bins];
        let mut signal = vec![0.0; n];
        let mut scratch = forward.make_scratch_vec();
        for g in 0..groups {
            for o in 0..fg {
                for c in 0..in_per_group {
                    signal.fill(0.0);
                    for j in 0..kernel_size {
                        signal[span - 1 - j * dilation_rate] = to_f64(kernel[[j, c, g * fg + o]]) * scale;
                    }
                    let start = ((g * fg + o) * in_per_group + c) * bins;
                    forward.process_with_scratch(&mut signal, &mut spectrum, &mut scratch).expect("buffers sized by the plan");
                    for (f, v) in spectrum.iter().enumerate() {
                        spectra_re[start + f] = v.re;
                        spectra_im[start + f] = v.im;
                    }
                }
            }
        }
        FftWeights {
            dilation_rate,
            n,
            span,
            in_per_group,
            filters_per_group: fg,
            groups,
            spectra_re,
            spectra_im,
            forward,
            inverse,
            element: std::marker::PhantomData,
        }
    }
}

type Split<'a> = (&'a [f64], &'a [f64]);

/// `product += input * kernel`, bin by bin, on split complex arrays.
fn multiply_accumulate(product: (&mut [f64], &mut [f64]), input: Split<'_>, kernel: Split<'_>, fused: bool) {
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: `fused` is only true when AVX2 and FMA were detected.
        return unsafe { multiply_accumulate_fma(product, input, kernel) };
    }
    let _ = fused;
    multiply_accumulate_body(product, input, kernel);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn multiply_accumulate_fma(product: (&mut [f64], &mut [f64]), input: Split<'_>, kernel: Split<'_>) {
    multiply_accumulate_body(product, input, kernel);
}

#[inline(always)]
fn multiply_accumulate_body((pr, pi): (&mut [f64], &mut [f64]), (xr, xi): Split<'_>, (kr, ki): Split<'_>) {
    let n = pr.len().min(pi.len()).min(xr.len()).min(xi.len()).min(kr.len()).min(ki.len());
    for f in 0..n {
        pr[f] += xr[f] * kr[f] - xi[f] * ki[f];
        pi[f] += xr[f] * ki[f] + xi[f] * kr[f];
    }
}

fn to_f64<T: Element>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// Runs the convolution (stride 1) into `out`, writing every element.
pub fn run<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    weights: &FftWeights<T>,
    bias: Option<ArrayView1<T>>,
    parallel: bool,
    out: &mut [MaybeUninit<T>],
) {
    debug_assert_eq!(geo.strides, 1);
    debug_assert_eq!(weights.span, geo.halo() + 1);
    let (n, span) = (weights.n, weights.span);
    let bins = n / 2 + 1;
    let (cg, fg) = (weights.in_per_group, weights.filters_per_group);
    let useful = n - span + 1;
    let blocks = geo.out_steps.div_ceil(useful);
    let items = geo.batch * weights.groups * blocks;
    if items == 0 {
        return;
    }
    let out_ptr = SharedOut(out.as_mut_ptr().cast::<T>());
    let zero = Complex::new(0.0, 0.0);
    let scratch_len = weights.forward.get_scratch_len().max(weights.inverse.get_scratch_len());
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    let fused = super::use_avx2(super::Simd::Auto);
    let channels_last = geo.data_format == DataFormat::ChannelsLast;

    for_each_item::<T, _>(items, 0, parallel, |item, _| {
        let block = item % blocks;
        let g = (item / blocks) % weights.groups;
        let b = item / (blocks * weights.groups);
        let t0 = block * useful;
        let count = useful.min(geo.out_steps - t0);
        let mut signal = vec![0.0; n];
        let mut spectrum = vec![zero; bins];
        let (mut inputs_re, mut inputs_im) = (vec![0.0; cg * bins], vec![0.0; cg * bins]);
        let (mut product_re, mut product_im) = (vec![0.0; bins], vec![0.0; bins]);
        let mut scratch = vec![zero; scratch_len];
        let first = geo.first_input_step(t0);
        for c in 0..cg {
            let lane = x.slice(ndarray::s![b, .., g * cg + c]);
            for (i, v) in signal.iter_mut().enumerate() {
                let step = first + i as isize;
                *v = if step >= 0 && (step as usize) < geo.steps { to_f64(lane[step as usize]) } else { 0.0 };
            }
            weights.forward.process_with_scratch(&mut signal, &mut spectrum, &mut scratch).expect("buffers sized by the plan");
            for (f, v) in spectrum.iter().enumerate() {
                inputs_re[c * bins + f] = v.re;
                inputs_im[c * bins + f] = v.im;
            }
        }
        // channels_last rows are gathered for a few filters at a time and written a line at a
        // time: one filter's steps alone land a whole row of filters apart.
        let mut gathered = vec![T::zero(); if channels_last { count * FILTERS_AT_ONCE } else { 0 }];
        for o in 0..fg {
            product_re.fill(0.0);
            product_im.fill(0.0);
            for c in 0..cg {
                let start = ((g * fg + o) * cg + c) * bins;
                let kernel = (&weights.spectra_re[start..start + bins], &weights.spectra_im[start..start + bins]);
                let input = (&inputs_re[c * bins..(c + 1) * bins], &inputs_im[c * bins..(c + 1) * bins]);
                multiply_accumulate((&mut product_re, &mut product_im), input, kernel, fused);
            }
            // A real signal's DC and Nyquist bins are real; rounding must not say otherwise.
            for (f, v) in spectrum.iter_mut().enumerate() {
                *v = Complex::new(product_re[f], product_im[f]);
            }
            spectrum[0].im = 0.0;
            spectrum[bins - 1].im = 0.0;
            weights.inverse.process_with_scratch(&mut spectrum, &mut signal, &mut scratch).expect("buffers sized by the plan");
            let filter = g * fg + o;
            let bias = bias.map_or(0.0, |b| to_f64(b[filter]));
            // One rounding to T, bias included.
            let values = signal[span - 1..][..count].iter().map(|v| T::from(v + bias).unwrap_or_else(T::nan));
            if !channels_last {
                for (i, value) in values.enumerate() {
                    // SAFETY: steps t0..t0+count of this batch item and group belong to this item alone.
                    unsafe { *out_ptr.get().add((b * geo.filters + filter) * geo.out_steps + t0 + i) = value };
                }
                continue;
            }
            let lane = o % FILTERS_AT_ONCE;
            for (i, value) in values.enumerate() {
                gathered[i * FILTERS_AT_ONCE + lane] = value;
            }
            if lane + 1 == FILTERS_AT_ONCE || o + 1 == fg {
                let (first_filter, width) = (filter - lane, lane + 1);
                for (i, row) in gathered.chunks_exact(FILTERS_AT_ONCE).enumerate() {
                    let index = (b * geo.out_steps + t0 + i) * geo.filters + first_filter;
                    // SAFETY: filters first_filter..=filter of steps t0..t0+count of this batch
                    // item belong to this item alone.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(index).cast::<MaybeUninit<T>>(), width) };
                    for (d, &v) in dst.iter_mut().zip(row) {
                        d.write(v);
                    }
                }
            }
        }
    });
}
