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
use realfft::{RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
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
    /// Complex, of length `n`: each transform turns the spectra of two filters into both outputs.
    inverse: Arc<dyn Fft<f64>>,
    element: std::marker::PhantomData<T>,
}

/// FFT length for a kernel spanning `span` steps: a power of two about four spans long,
/// so most of each block is useful output.
pub fn fft_len(span: usize) -> usize {
    (4 * span).next_power_of_two().max(256)
}

/// Estimated cost ratio (FFT / direct) per output step; below 1 the FFT path is faster.
/// Measured on AVX2 machines over 16-255 taps, 1-64 channels and 16-128 filters, an f64 FFT
/// flop costs about 9 times an f32 micro-kernel flop, and half as much against the f64
/// micro-kernel, which is half as fast.
pub fn relative_cost<T>(geo: &Geometry) -> f64 {
    let span = geo.halo() + 1;
    let n = fft_len(span) as f64;
    let (cg, fg) = (geo.in_per_group() as f64, geo.filters_per_group() as f64);
    let useful = n - span as f64 + 1.0;
    let bins = n / 2.0 + 1.0;
    let fft = (cg + fg) * 2.5 * n * n.log2() + 8.0 * cg * fg * bins;
    let direct = 2.0 * geo.kernel_size as f64 * cg * fg * useful;
    let flop_cost = 9.0 * 4.0 / std::mem::size_of::<T>() as f64;
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
        let inverse = FftPlanner::<f64>::new().plan_fft_inverse(n);
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

/// `product = input * kernel` (or `+=` when `accumulate`), bin by bin, on split complex arrays.
fn multiply(product: (&mut [f64], &mut [f64]), input: Split<'_>, kernel: Split<'_>, accumulate: bool, fused: bool) {
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: `fused` is only true when AVX2 and FMA were detected.
        return unsafe { multiply_fma(product, input, kernel, accumulate) };
    }
    let _ = fused;
    multiply_body(product, input, kernel, accumulate);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn multiply_fma(product: (&mut [f64], &mut [f64]), input: Split<'_>, kernel: Split<'_>, accumulate: bool) {
    multiply_body(product, input, kernel, accumulate);
}

#[inline(always)]
fn multiply_body((pr, pi): (&mut [f64], &mut [f64]), (xr, xi): Split<'_>, (kr, ki): Split<'_>, accumulate: bool) {
    let n = pr.len().min(pi.len()).min(xr.len()).min(xi.len()).min(kr.len()).min(ki.len());
    let (pr, pi, xr, xi, kr, ki) = (&mut pr[..n], &mut pi[..n], &xr[..n], &xi[..n], &kr[..n], &ki[..n]);
    if accumulate {
        for f in 0..n {
            pr[f] += xr[f] * kr[f] - xi[f] * ki[f];
            pi[f] += xr[f] * ki[f] + xi[f] * kr[f];
        }
    } else {
        for f in 0..n {
            pr[f] = xr[f] * kr[f] - xi[f] * ki[f];
            pi[f] = xr[f] * ki[f] + xi[f] * kr[f];
        }
    }
}

/// The output spectra of two filters on one block, bin by bin: `sum + input * kernel`, where
/// `input` and `kernel` are the spectra of the group's last channel and `sum` the products of
/// its other channels (absent with one channel per group). A missing second filter has a
/// zero kernel.
#[derive(Clone, Copy)]
struct FilterPair<'a> {
    input: Split<'a>,
    kernels: [Split<'a>; 2],
    sums: Option<[Split<'a>; 2]>,
}

impl FilterPair<'_> {
    /// Both filters' spectra at bin `k`, in the order of operations of [`multiply`].
    #[inline(always)]
    fn bin(&self, k: usize) -> [(f64, f64); 2] {
        let (xr, xi) = (self.input.0[k], self.input.1[k]);
        std::array::from_fn(|f| {
            let (kr, ki) = (self.kernels[f].0[k], self.kernels[f].1[k]);
            let (re, im) = (xr * kr - xi * ki, xr * ki + xi * kr);
            match self.sums {
                Some(sums) => (sums[f].0[k] + re, sums[f].1[k] + im),
                None => (re, im),
            }
        })
    }

    /// True when every spectrum holds bin `last`.
    fn holds(&self, last: usize) -> bool {
        let splits = [self.input].into_iter().chain(self.kernels).chain(self.sums.into_iter().flatten());
        splits.into_iter().all(|(re, im)| re.len() > last && im.len() > last)
    }
}

/// The full spectrum `Z = Y1 + i Y2` of `z = y1 + i y2` for the pair's two real outputs, so
/// one complex inverse transform yields both: `y1 = re z`, `y2 = im z`. A real signal's DC
/// and Nyquist bins are real; rounding must not say otherwise.
fn pair_spectrum(spectra: &FilterPair<'_>, pair: &mut [Complex<f64>], fused: bool) {
    let half = pair.len() / 2;
    assert!(spectra.holds(half), "half spectra shorter than the transform");
    for k in [0, half] {
        let [(first, _), (second, _)] = spectra.bin(k);
        pair[k] = Complex::new(first, second);
    }
    let mut start = 1;
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: AVX2 was detected; every spectrum holds `half + 1` bins (asserted above).
        start = unsafe { pair_spectrum_avx(spectra, pair) };
    }
    let _ = fused;
    // Bin k holds Y1 + i Y2, bin n - k their conjugates: conj(Y1) + i conj(Y2).
    for k in start..half {
        let [(ar, ai), (br, bi)] = spectra.bin(k);
        pair[k] = Complex::new(ar - bi, ai + br);
        pair[2 * half - k] = Complex::new(ar + bi, br - ai);
    }
}

/// Bins `1..` of [`pair_spectrum`] four at a time while four remain below `half`; returns
/// the first bin not done. Same operations in the same order as [`FilterPair::bin`].
///
/// # Safety
/// AVX2 is available; every spectrum holds `pair.len() / 2 + 1` bins.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_spectrum_avx(spectra: &FilterPair<'_>, pair: &mut [Complex<f64>]) -> usize {
    use std::arch::x86_64::*;
    let half = pair.len() / 2;
    let out = pair.as_mut_ptr().cast::<f64>();
    let mut k = 1;
    while k + 4 <= half {
        // SAFETY: bins k..k+4 lie below `half`, their mirrors n-k-3..=n-k above it.
        unsafe {
            let load = |s: &[f64]| _mm256_loadu_pd(s.as_ptr().add(k));
            let (xr, xi) = (load(spectra.input.0), load(spectra.input.1));
            let mut y = [(_mm256_setzero_pd(), _mm256_setzero_pd()); 2];
            for (f, (re, im)) in y.iter_mut().enumerate() {
                let (kr, ki) = (load(spectra.kernels[f].0), load(spectra.kernels[f].1));
                *re = _mm256_sub_pd(_mm256_mul_pd(xr, kr), _mm256_mul_pd(xi, ki));
                *im = _mm256_add_pd(_mm256_mul_pd(xr, ki), _mm256_mul_pd(xi, kr));
                if let Some(sums) = spectra.sums {
                    *re = _mm256_add_pd(load(sums[f].0), *re);
                    *im = _mm256_add_pd(load(sums[f].1), *im);
                }
            }
            let [(ar, ai), (br, bi)] = y;
            let (low_re, low_im) = (_mm256_sub_pd(ar, bi), _mm256_add_pd(ai, br));
            let (high_re, high_im) = (_mm256_add_pd(ar, bi), _mm256_sub_pd(br, ai));
            // Interleaved: bins k, k+1 in one register, k+2, k+3 in the other.
            let (a, b) = (_mm256_unpacklo_pd(low_re, low_im), _mm256_unpackhi_pd(low_re, low_im));
            _mm256_storeu_pd(out.add(2 * k), _mm256_permute2f128_pd(a, b, 0x20));
            _mm256_storeu_pd(out.add(2 * k + 4), _mm256_permute2f128_pd(a, b, 0x31));
            // Mirrored bins run downwards: n-k-3, n-k-2 from the second pair, then n-k-1, n-k.
            let (a, b) = (_mm256_unpacklo_pd(high_re, high_im), _mm256_unpackhi_pd(high_re, high_im));
            let mirror = 2 * (2 * half - k - 3);
            _mm256_storeu_pd(out.add(mirror), _mm256_permute2f128_pd(b, a, 0x31));
            _mm256_storeu_pd(out.add(mirror + 4), _mm256_permute2f128_pd(b, a, 0x20));
        }
        k += 4;
    }
    k
}

fn to_f64<T: Element>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// One rounding to `T`, bias included.
fn to_output<T: Element>(v: f64, bias: f64) -> T {
    T::from(v + bias).unwrap_or_else(T::nan)
}

/// Runs the convolution (stride 1) into `out`, writing every element.
pub fn run<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    weights: &FftWeights<T>,
    bias: Option<ArrayView1<T>>,
    simd: super::Simd,
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
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    let fused = super::use_avx2(simd);
    let channels_last = geo.data_format == DataFormat::ChannelsLast;
    // As in the GEMM path: outputs far larger than the caches are written around them.
    let stream = fused && channels_last && std::mem::size_of_val(out) >= super::gemm::STREAM_MIN_BYTES;

    for_each_item::<T, _>(items, 0, parallel, |item, _| {
        let block = item % blocks;
        let g = (item / blocks) % weights.groups;
        let b = item / (blocks * weights.groups);
        let t0 = block * useful;
        let count = useful.min(geo.out_steps - t0);
        let mut signal = vec![0.0; n];
        let mut spectrum = vec![zero; bins];
        let mut scratch = vec![zero; weights.forward.get_scratch_len().max(weights.inverse.get_inplace_scratch_len())];
        let (mut inputs_re, mut inputs_im) = (vec![0.0; cg * bins], vec![0.0; cg * bins]);
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
        let mut sums = [vec![0.0; bins], vec![0.0; bins], vec![0.0; bins], vec![0.0; bins]];
        let silent = vec![0.0; bins];
        let mut pair = vec![zero; n];
        // channels_last rows are gathered for a few filters at a time and written a line at a
        // time: one filter's steps alone land a whole row of filters apart.
        let mut gathered = vec![T::zero(); if channels_last { count * FILTERS_AT_ONCE } else { 0 }];
        let input_of = |c: usize| (&inputs_re[c * bins..(c + 1) * bins], &inputs_im[c * bins..(c + 1) * bins]);
        let last = cg - 1;
        for o in (0..fg).step_by(2) {
            let filters = 2.min(fg - o);
            let kernel_of = |f: usize, c: usize| -> Split<'_> {
                if f >= filters {
                    return (&silent, &silent);
                }
                let start = ((g * fg + o + f) * cg + c) * bins;
                (&weights.spectra_re[start..start + bins], &weights.spectra_im[start..start + bins])
            };
            // The last channel's products are formed with the pair spectrum, in one pass.
            let [first_re, first_im, second_re, second_im] = &mut sums;
            for (f, (re, im)) in [(&mut *first_re, &mut *first_im), (&mut *second_re, &mut *second_im)].into_iter().enumerate() {
                for c in 0..last {
                    multiply((re, im), input_of(c), kernel_of(f, c), c > 0, fused);
                }
            }
            let spectra = FilterPair {
                input: input_of(last),
                kernels: [kernel_of(0, last), kernel_of(1, last)],
                sums: (last > 0).then_some([(&sums[0][..], &sums[1][..]), (&sums[2][..], &sums[3][..])]),
            };
            pair_spectrum(&spectra, &mut pair, fused);
            weights.inverse.process_with_scratch(&mut pair, &mut scratch);
            let filter = g * fg + o;
            let bias_of = |k: usize| bias.map_or(0.0, |b| to_f64(b[filter + k]));
            let (bias0, bias1) = (bias_of(0), if filters == 2 { bias_of(1) } else { 0.0 });
            let values = &pair[span - 1..][..count];
            if !channels_last {
                for k in 0..filters {
                    let row = (b * geo.filters + filter + k) * geo.out_steps + t0;
                    for (i, v) in values.iter().enumerate() {
                        let value = if k == 0 { to_output(v.re, bias0) } else { to_output(v.im, bias1) };
                        // SAFETY: steps t0..t0+count of this batch item and group belong to this item alone.
                        unsafe { *out_ptr.get().add(row + i) = value };
                    }
                }
                continue;
            }
            let lane = o % FILTERS_AT_ONCE;
            let rows = gathered.chunks_exact_mut(FILTERS_AT_ONCE).zip(values);
            if filters == 2 {
                for (row, v) in rows {
                    row[lane..lane + 2].copy_from_slice(&[to_output(v.re, bias0), to_output(v.im, bias1)]);
                }
            } else {
                for (row, v) in rows {
                    row[lane] = to_output(v.re, bias0);
                }
            }
            if lane + filters < FILTERS_AT_ONCE && o + filters < fg {
                continue;
            }
            let (first_filter, width) = (filter - lane, lane + filters);
            for (i, row) in gathered.chunks_exact(FILTERS_AT_ONCE).enumerate() {
                let index = (b * geo.out_steps + t0 + i) * geo.filters + first_filter;
                // SAFETY: filters first_filter..first_filter+width of steps t0..t0+count of this
                // batch item belong to this item alone.
                unsafe { write_row(out_ptr.get().add(index), &row[..width], stream) };
            }
        }
        #[cfg(target_arch = "x86_64")]
        if stream {
            super::microkernel::x86::store_fence();
        }
    });
}

/// Copies `row` to `dst`, around the caches when `stream` and `dst` allows 16-byte stores.
///
/// # Safety
/// `dst` addresses `row.len()` writable elements; `stream` only when AVX2 was detected.
unsafe fn write_row<T: Copy>(dst: *mut T, row: &[T], stream: bool) {
    let bytes = std::mem::size_of_val(row);
    #[cfg(target_arch = "x86_64")]
    if stream && (dst as usize).is_multiple_of(16) && bytes.is_multiple_of(16) {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let (src, dst) = (row.as_ptr().cast::<__m128i>(), dst.cast::<__m128i>());
        for i in 0..bytes / 16 {
            // SAFETY: both ranges hold `bytes` bytes; `dst` is 16-byte aligned.
            unsafe { _mm_stream_si128(dst.add(i), _mm_loadu_si128(src.add(i))) };
        }
        return;
    }
    let _ = (stream, bytes);
    // SAFETY: the caller's contract; `row` is a separate buffer.
    unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst, row.len()) };
}
