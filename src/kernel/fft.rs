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

use super::aligned::LineAligned;
use super::fft_rows::{to_output, FILTERS, PAIRS};
use super::{for_each_item_with, Element, SharedOut};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Most blocks one work item transforms together (see [`run_len`]).
const MAX_RUN: usize = 2;
/// Most bytes of input spectra a work item holds for its run of blocks.
const RUN_INPUT_BYTES: usize = 1 << 20;
/// Most bytes of transformed pairs a work item holds: a run of one block beyond this.
const PAIRS_MAX_BYTES: usize = 256 * 1024;
/// Work items per thread that runs are kept short enough to leave, for balance.
const ITEMS_PER_THREAD: usize = 3;

/// Half spectra of several channels laid out for the per-bin sums over channels: bins in
/// chunks of [`LANES`], and for each chunk, each channel's real parts then imaginary parts, so
/// that the sum over channels for a chunk reads one cache line per channel, in order. Bins past
/// the last (to a whole chunk) are zero.
struct Packed;

/// Bins per chunk of [`Packed`]: one AVX2 register of f64.
const LANES: usize = 4;

impl Packed {
    /// Elements of the half spectra of `channels` channels for transforms of length `n`.
    fn len(n: usize, channels: usize) -> usize {
        Self::chunks(n) * channels * 2 * LANES
    }

    fn chunks(n: usize) -> usize {
        (n / 2 + 1).div_ceil(LANES)
    }

    /// Where the real part of bin `k` of `channel` lies; the imaginary part is `LANES` later.
    fn at(channels: usize, channel: usize, k: usize) -> usize {
        (k / LANES * channels + channel) * 2 * LANES + k % LANES
    }

    /// Stores the half spectrum of `channel`.
    fn store(packed: &mut [f64], channels: usize, channel: usize, spectrum: &[Complex<f64>]) {
        for (chunk, bins) in spectrum.chunks(LANES).enumerate() {
            let (re, im) = packed[(chunk * channels + channel) * 2 * LANES..][..2 * LANES].split_at_mut(LANES);
            for ((re, im), v) in re.iter_mut().zip(im).zip(bins) {
                (*re, *im) = (v.re, v.im);
            }
        }
    }
}

/// Channels whose input a block gathers in one pass over its steps: channels_last rows hold
/// them side by side, so each input line is read once for all of them instead of once per
/// channel (one strided pass per channel over a block larger than L1 cost 14% of longkernel).
const GATHER: usize = 8;

/// Real signals of up to [`GATHER`] channels and the buffers of their forward transforms,
/// reused from one block or filter to the next.
struct ForwardBuffers {
    n: usize,
    /// Rows of `n` steps, one per channel.
    signals: LineAligned<f64>,
    spectrum: LineAligned<Complex<f64>>,
    /// For the transforms' own use (the inverse ones' too, in [`run`]).
    transform: LineAligned<Complex<f64>>,
}

impl ForwardBuffers {
    fn new(n: usize, rows: usize, transform_len: usize) -> Self {
        ForwardBuffers {
            n,
            signals: LineAligned::zeros(rows * n),
            spectrum: LineAligned::zeros(n / 2 + 1),
            transform: LineAligned::zeros(transform_len),
        }
    }

    fn signal(&mut self, row: usize) -> &mut [f64] {
        &mut self.signals[row * self.n..][..self.n]
    }

    /// Loads steps `inside` of batch item `b`'s channels `first..first + width` into signal
    /// rows `0..width` from step `offset` on, zero elsewhere.
    fn gather<T: Element>(&mut self, x: &ArrayView3<T>, b: usize, inside: Range<usize>, offset: usize, first: usize, width: usize) {
        let (n, len) = (self.n, inside.len());
        for row in 0..width {
            let signal = self.signal(row);
            signal[..offset].fill(0.0);
            signal[offset + len..].fill(0.0);
        }
        if len == 0 {
            return;
        }
        let (step_stride, channel_stride) = (x.strides()[1], x.strides()[2]);
        // SAFETY: b is a batch item, `inside` holds input steps and the channels exist.
        let origin = unsafe { x.uget([b, inside.start, first]) } as *const T;
        let signals = &mut self.signals[offset..];
        // SAFETY (all loops): step i < len of channel row < width is inside the input.
        // Plain strided reads: ndarray's iterators over strided lanes cost several times more.
        if step_stride.unsigned_abs() == 1 {
            // Each channel's steps are contiguous (channels_first memory): a row at a time.
            for row in 0..width {
                let lane = origin.wrapping_offset(row as isize * channel_stride);
                for (i, v) in signals[row * n..][..len].iter_mut().enumerate() {
                    *v = to_f64(unsafe { *lane.offset(i as isize * step_stride) });
                }
            }
            return;
        }
        let mut done = 0;
        if channel_stride == 1 && width == GATHER {
            // A whole gather of channels_last rows, four steps at a time: fixed runs of adjacent
            // values, which the compiler loads and converts a register at a time, and four
            // values per channel stored together.
            const STEPS: usize = 4;
            done = len / STEPS * STEPS;
            for i in (0..done).step_by(STEPS) {
                let block: [[f64; GATHER]; STEPS] = std::array::from_fn(|s| {
                    let step = origin.wrapping_offset((i + s) as isize * step_stride);
                    std::array::from_fn(|row| to_f64(unsafe { *step.add(row) }))
                });
                for row in 0..GATHER {
                    let out: &mut [f64; STEPS] = (&mut signals[row * n + i..][..STEPS]).try_into().expect("STEPS values");
                    *out = std::array::from_fn(|s| block[s][row]);
                }
            }
        }
        for i in done..len {
            let step = origin.wrapping_offset(i as isize * step_stride);
            for row in 0..width {
                signals[row * n + i] = to_f64(unsafe { *step.offset(row as isize * channel_stride) });
            }
        }
    }

    /// Transforms signal `row` (which it leaves undefined) and stores its half spectrum as
    /// `channel` of the [`Packed`] `packed`.
    fn store(&mut self, row: usize, plan: &dyn RealToComplex<f64>, packed: &mut [f64], channels: usize, channel: usize) {
        let signal = &mut self.signals[row * self.n..][..self.n];
        plan.process_with_scratch(signal, &mut self.spectrum, &mut self.transform).expect("buffers sized by the plan");
        Packed::store(packed, channels, channel, &self.spectrum);
    }
}

/// Kernel spectra for one dilation, ready for any input length.
pub struct FftWeights<T: Element> {
    pub dilation_rate: usize,
    n: usize,
    span: usize,
    in_per_group: usize,
    filters_per_group: usize,
    groups: usize,
    /// Kernel spectra scaled by `1 / n` (exact: `n` is a power of two), in [`Packed`] layout
    /// per filter: `[group][filter][chunk][channel]`.
    spectra: LineAligned<f64>,
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

/// Cost of an f64 transform flop, in f32 micro-kernel flops.
const TRANSFORM_FLOP_COST: f64 = 5.8;
/// Cost of a flop of the kernel's own transforms, in f32 micro-kernel flops, with their packing
/// and the one-off call's set-up (measured 47-48 on two threads, for longkernel's 1,024-step
/// transforms and for the 256-step ones of 128 x 128 channels).
const KERNEL_TRANSFORM_FLOP_COST: f64 = 50.0;
/// Cost of a flop of the per-bin sums over channels, in f32 micro-kernel flops, while the
/// kernel spectra stay in the caches; up to twice this as they outgrow them.
const SUMS_FLOP_COST: f64 = 4.9;
/// Kernel spectra from which their sums cost twice as much: read from memory for each run.
const SPECTRA_OUT_OF_CACHE_BYTES: f64 = 48.0 * 1024.0 * 1024.0;

/// Estimated cost ratio below which a call takes the FFT path: near 1, measured ratios scatter
/// by up to 25% either way, and the direct sum is then kept.
pub const MAX_RELATIVE_COST: f64 = 0.85;

/// Estimated cost ratio (FFT / direct) of a call, whose FFT side includes transforming the
/// kernel when `kernel_transforms` (a kernel used once); below 1 the FFT path is faster.
/// Fitted on Zen 4 over 29 shapes of 15-255 taps, 1-512 channels and 4-512 filters, with the
/// kernel's spectra kept (within 18% on average); an f64 micro-kernel flop costs twice an f32 one.
pub fn relative_cost<T>(geo: &Geometry, kernel_transforms: bool) -> f64 {
    let span = geo.halo() + 1;
    let n = fft_len(span) as f64;
    let (cg, fg, groups) = (geo.in_per_group() as f64, geo.filters_per_group() as f64, geo.groups as f64);
    let useful = n - span as f64 + 1.0;
    let bins = n / 2.0 + 1.0;
    // One block more for the uneven split of a few blocks over the threads.
    let blocks = (geo.out_steps as f64 / useful).ceil() * geo.batch as f64 * groups + 1.0;
    let transform = 2.5 * n * n.log2();
    let spectra_bytes = groups * cg * fg * bins * 16.0;
    let sums_flop_cost = SUMS_FLOP_COST * (1.0 + (spectra_bytes / SPECTRA_OUT_OF_CACHE_BYTES).min(1.0));
    let per_block = TRANSFORM_FLOP_COST * (cg + fg) * transform + sums_flop_cost * 8.0 * cg * fg * bins;
    let kernel = if kernel_transforms { KERNEL_TRANSFORM_FLOP_COST * groups * cg * fg * transform } else { 0.0 };
    // The direct sum computes whole registers of filters (8 float32, 4 float64), used or not;
    // the depthwise kernel (one channel and one filter per group) vectorises across groups.
    let lanes = (32 / std::mem::size_of::<T>()) as f64;
    let filter_lanes = if cg == 1.0 && fg == 1.0 { 1.0 } else { (fg / lanes).ceil() * lanes / fg };
    let direct = 2.0 * geo.macs() * filter_lanes * std::mem::size_of::<T>() as f64 / 4.0;
    (blocks * per_block + kernel) / direct
}

impl<T: Element> FftWeights<T> {
    /// Transforms a Keras-layout kernel `(kernel_size, in_per_group, filters)` dilated by
    /// `dilation_rate`, filters shared over the threads when `parallel`; None when the call
    /// stopped first (cancelled), which must not keep spectra with filters missing.
    pub fn new(kernel: ArrayView3<T>, groups: usize, dilation_rate: usize, parallel: bool) -> Option<Self> {
        let (kernel_size, in_per_group, filters) = kernel.dim();
        let fg = filters / groups;
        let span = dilation_rate * (kernel_size - 1) + 1;
        let n = fft_len(span);
        let forward = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        let inverse = FftPlanner::<f64>::new().plan_fft_inverse(n);
        let scale = 1.0 / n as f64;
        let per_filter = Packed::len(n, in_per_group);
        let mut spectra = LineAligned::<f64>::zeros(filters * per_filter);
        let out = SharedOut(spectra.as_mut_ptr());
        let done = AtomicUsize::new(0);
        let new_scratch = |_: &super::CallState| Some(ForwardBuffers::new(n, 1, forward.get_scratch_len()));
        for_each_item_with(filters, parallel, new_scratch, |filter, buffers: &mut ForwardBuffers| {
            // SAFETY: each filter's spectra are written by its own work item only.
            let packed = unsafe { std::slice::from_raw_parts_mut(out.get().add(filter * per_filter), per_filter) };
            for c in 0..in_per_group {
                let signal = buffers.signal(0);
                signal.fill(0.0);
                for j in 0..kernel_size {
                    signal[span - 1 - j * dilation_rate] = to_f64(kernel[[j, c, filter]]) * scale;
                }
                buffers.store(0, forward.as_ref(), packed, in_per_group, c);
            }
            done.fetch_add(1, Ordering::Relaxed);
        });
        (done.into_inner() == filters).then(|| FftWeights {
            dilation_rate,
            n,
            span,
            in_per_group,
            filters_per_group: fg,
            groups,
            spectra,
            forward,
            inverse,
            element: std::marker::PhantomData,
        })
    }
}

/// Where the output spectra of a pair of filters come from on a run of blocks: the input
/// spectra of each block and each filter's kernel spectra, all [`Packed`] over the group's
/// channels. A missing second filter has a zero kernel.
struct PairSource<'a> {
    /// `[block][chunk][channel]`.
    inputs: &'a [f64],
    kernels: [&'a [f64]; 2],
    channels: usize,
    /// Length of the transforms.
    n: usize,
}

impl PairSource<'_> {
    fn block_len(&self) -> usize {
        Packed::len(self.n, self.channels)
    }

    /// True when the kernels hold the spectra of all the channels and the inputs of `blocks` blocks.
    fn holds(&self, blocks: usize) -> bool {
        self.inputs.len() >= blocks * self.block_len() && self.kernels.iter().all(|k| k.len() == self.block_len())
    }

    /// Both filters' output spectra at bin `k` of `block`: the sums over channels of
    /// input * kernel.
    fn bin(&self, block: usize, k: usize) -> [(f64, f64); 2] {
        let (inputs, mut sums) = (&self.inputs[block * self.block_len()..], [(0.0, 0.0); 2]);
        for c in 0..self.channels {
            let at = Packed::at(self.channels, c, k);
            let (xr, xi) = (inputs[at], inputs[at + LANES]);
            for ((re, im), kernel) in sums.iter_mut().zip(self.kernels) {
                let (kr, ki) = (kernel[at], kernel[at + LANES]);
                *re += xr * kr - xi * ki;
                *im += xr * ki + xi * kr;
            }
        }
        sums
    }
}

/// Fills `pairs[b]` with the full spectrum `Z = Y1 + i Y2` of `z = y1 + i y2` for the pair's
/// two real outputs on block `b`, so one complex inverse transform yields both:
/// `y1 = re z`, `y2 = im z`. A real signal's DC and Nyquist bins are real; rounding must not
/// say otherwise.
fn pair_spectra(source: &PairSource<'_>, pairs: &mut [LineAligned<Complex<f64>>], fused: bool) {
    assert!(source.holds(pairs.len()), "spectra of every channel and block");
    assert!(pairs.iter().all(|pair| pair.len() == source.n), "pair spectra as long as the transform");
    let half = source.n / 2;
    // Bins the vector loop leaves: the first chunk (with DC) and the Nyquist bin.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut scalar_bins = 1..half;
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: AVX2 and FMA were detected; the spectra's lengths are asserted above.
        unsafe {
            match pairs {
                [one] => pair_spectra_avx::<1>(source, [one]),
                [one, two] => pair_spectra_avx::<2>(source, [one, two]),
                _ => unreachable!("one or two blocks at a time"),
            };
        }
        scalar_bins = 1..LANES;
    }
    let _ = fused;
    for (b, pair) in pairs.iter_mut().enumerate() {
        for k in [0, half] {
            let [(first, _), (second, _)] = source.bin(b, k);
            pair[k] = Complex::new(first, second);
        }
        // Bin k holds Y1 + i Y2, bin n - k their conjugates: conj(Y1) + i conj(Y2).
        for k in scalar_bins.clone() {
            let [(ar, ai), (br, bi)] = source.bin(b, k);
            pair[k] = Complex::new(ar - bi, ai + br);
            pair[2 * half - k] = Complex::new(ar + bi, br - ai);
        }
    }
}

/// Bins `LANES..half` of [`pair_spectra`], a chunk at a time, for `R` blocks at once: each
/// kernel chunk loaded serves all of them, and the sums over channels stay in registers.
///
/// # Safety
/// AVX2 and FMA are available; the spectra are as [`pair_spectra`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pair_spectra_avx<const R: usize>(source: &PairSource<'_>, mut pairs: [&mut LineAligned<Complex<f64>>; R]) {
    use std::arch::x86_64::*;
    let half = source.n / 2;
    let inputs = source.inputs.as_ptr();
    for chunk in 1..half / LANES {
        let k = chunk * LANES;
        // SAFETY: the chunk lies inside every block's and kernel's spectra, and bins
        // n-k-3..=n-k inside the pairs (k >= LANES).
        unsafe {
            let load = |p: *const f64, at: usize| (_mm256_loadu_pd(p.add(at)), _mm256_loadu_pd(p.add(at + LANES)));
            let mut y = [[(_mm256_setzero_pd(), _mm256_setzero_pd()); 2]; R];
            for c in 0..source.channels {
                let at = Packed::at(source.channels, c, k);
                let kernels = source.kernels.map(|kernel| load(kernel.as_ptr(), at));
                for (b, sums) in y.iter_mut().enumerate() {
                    let (x_re, x_im) = load(inputs, b * source.block_len() + at);
                    for ((re, im), (k_re, k_im)) in sums.iter_mut().zip(kernels) {
                        *re = _mm256_fnmadd_pd(x_im, k_im, _mm256_fmadd_pd(x_re, k_re, *re));
                        *im = _mm256_fmadd_pd(x_im, k_re, _mm256_fmadd_pd(x_re, k_im, *im));
                    }
                }
            }
            for (pair, [(ar, ai), (br, bi)]) in pairs.iter_mut().zip(y) {
                let out = pair.as_mut_ptr().cast::<f64>();
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
        }
    }
}

fn to_f64<T: Element>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// Buffers each worker reuses from one work item to the next.
struct Scratch {
    buffers: ForwardBuffers,
    /// The run's input spectra, `[block]` of [`Packed`] channels; the bins past the last stay zero.
    inputs: LineAligned<f64>,
    /// Pair spectra, transformed in place: `[pair][block]`.
    pairs: Vec<LineAligned<Complex<f64>>>,
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
    let (cg, fg) = (weights.in_per_group, weights.filters_per_group);
    let useful = n - span + 1;
    let blocks = geo.out_steps.div_ceil(useful);
    let sequences = geo.batch * weights.groups;
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    let block_len = Packed::len(n, cg);
    let run_len = run_len(sequences * blocks, block_len, n, parallel);
    let runs = blocks.div_ceil(run_len);
    let items = sequences * runs;
    if items == 0 {
        return;
    }
    let out_ptr = SharedOut(out.as_mut_ptr().cast::<T>());
    let fused = super::use_avx2(simd);
    let channels_last = geo.data_format == DataFormat::ChannelsLast;
    let write_rows = T::fft_rows(simd);
    // As in the GEMM path: outputs far larger than the caches are written around them.
    let stream = fused && channels_last && std::mem::size_of_val(out) >= super::gemm::STREAM_MIN_BYTES;

    let transform_scratch = weights.forward.get_scratch_len().max(weights.inverse.get_inplace_scratch_len());
    // The kernel of a missing second filter in a pair.
    let silent = vec![0.0; if fg % 2 == 1 { block_len } else { 0 }];
    let new_scratch = |_: &super::CallState| {
        Some(Scratch {
            buffers: ForwardBuffers::new(n, GATHER.min(cg), transform_scratch),
            inputs: LineAligned::zeros(run_len.min(blocks) * block_len),
            pairs: (0..PAIRS * run_len).map(|_| LineAligned::zeros(n)).collect(),
        })
    };

    for_each_item_with(items, parallel, new_scratch, |item, scratch: &mut Scratch| {
        let Scratch { buffers, inputs, pairs } = scratch;
        let run = item % runs;
        let g = (item / runs) % weights.groups;
        let b = item / (runs * weights.groups);
        let first_block = run * run_len;
        let here = run_len.min(blocks - first_block);
        let t_first = first_block * useful;
        // Output steps of the run's blocks: all `useful` but the sequence's last.
        let count_of = |block: usize| useful.min(geo.out_steps - t_first - block * useful);
        for block in 0..here {
            let first = geo.first_input_step(t_first + block * useful);
            // The signal's steps that lie inside the input; the rest is padding.
            let inside = first.max(0).min(geo.steps as isize) as usize..(first + n as isize).clamp(0, geo.steps as isize) as usize;
            let offset = (inside.start as isize - first).clamp(0, n as isize) as usize;
            for c0 in (0..cg).step_by(GATHER) {
                let width = GATHER.min(cg - c0);
                buffers.gather(&x, b, inside.clone(), offset, g * cg + c0, width);
                for row in 0..width {
                    buffers.store(row, weights.forward.as_ref(), &mut inputs[block * block_len..][..block_len], cg, c0 + row);
                }
            }
        }
        let kernel_of = |filter: usize| -> &[f64] {
            if filter >= fg {
                return &silent;
            }
            &weights.spectra[(g * fg + filter) * block_len..][..block_len]
        };
        for first_filter in (0..fg).step_by(FILTERS) {
            let width = FILTERS.min(fg - first_filter);
            let filter0 = g * fg + first_filter;
            let bias = std::array::from_fn::<f64, FILTERS, _>(|k| bias.filter(|_| k < width).map_or(0.0, |b| to_f64(b[filter0 + k])));
            for (pair, o) in (first_filter..first_filter + width).step_by(2).enumerate() {
                let source = PairSource { inputs, kernels: [kernel_of(o), kernel_of(o + 1)], channels: cg, n };
                let spectra = &mut pairs[pair * here..][..here];
                pair_spectra(&source, spectra, fused);
                for spectrum in spectra {
                    weights.inverse.process_with_scratch(spectrum, &mut buffers.transform);
                }
            }
            for block in 0..here {
                let (t0, count) = (t_first + block * useful, count_of(block));
                let values = |k: usize| &pairs[k / 2 * here + block][span - 1..][..count];
                if !channels_last {
                    for k in 0..width {
                        let row = (b * geo.filters + filter0 + k) * geo.out_steps + t0;
                        for (i, v) in values(k).iter().enumerate() {
                            let value = to_output(if k % 2 == 0 { v.re } else { v.im }, bias[k]);
                            // SAFETY: steps t0..t0+count of this batch item and group belong to this item alone.
                            unsafe { *out_ptr.get().add(row + i) = value };
                        }
                    }
                    continue;
                }
                // channels_last rows take the run's filters a line at a time: one filter's
                // steps alone land a whole row of filters apart.
                let columns: [&[Complex<f64>]; PAIRS] = std::array::from_fn(|pair| values((2 * pair).min(width - 1)));
                let first_row = (b * geo.out_steps + t0) * geo.filters + filter0;
                // SAFETY: filters filter0..filter0+width of steps t0..t0+count of this batch
                // item belong to this item alone; `stream` only with AVX2 (see above).
                unsafe { write_rows(&columns, &bias, width, out_ptr.get().add(first_row), geo.filters, stream) };
            }
        }
        #[cfg(target_arch = "x86_64")]
        if stream {
            super::microkernel::x86::store_fence();
        }
    });
}

/// Blocks per work item: up to [`MAX_RUN`] consecutive blocks of one sequence share each read
/// of the kernel spectra, within [`RUN_INPUT_BYTES`] of input spectra and [`PAIRS_MAX_BYTES`]
/// of transformed pairs, while leaving a few items per thread. Each block's sums are the same
/// whatever its run.
fn run_len(blocks: usize, block_len: usize, n: usize, parallel: bool) -> usize {
    let pairs_bytes = PAIRS * n * std::mem::size_of::<Complex<f64>>();
    let by_memory = (RUN_INPUT_BYTES / (block_len * std::mem::size_of::<f64>()).max(1)).min(PAIRS_MAX_BYTES / pairs_bytes);
    let threads = if parallel { super::pool_threads() } else { 1 };
    let by_threads = blocks / (ITEMS_PER_THREAD * threads);
    MAX_RUN.min(by_memory).min(by_threads).max(1)
}

#[cfg(test)]
mod tests {
    use super::{relative_cost, FftWeights, MAX_RELATIVE_COST};
    use crate::geometry::Geometry;
    use crate::kernel::{supervised, with_cancel, CancelToken};
    use crate::params::{Conv1dParams, Padding};
    use crate::ConvError;

    #[test]
    fn a_call_stopped_while_transforming_the_kernel_keeps_no_spectra() {
        let kernel = ndarray::Array3::<f32>::ones((40, 3, 4));
        let token = CancelToken::new();
        let mut transformed = None;
        let result = with_cancel(&token, || {
            supervised(|| {
                token.cancel();
                transformed = Some(FftWeights::new(kernel.view(), 1, 1, true).is_some());
            })
        });
        assert_eq!(result, Err(ConvError::Cancelled));
        assert_eq!(transformed, Some(false));
        assert!(FftWeights::new(kernel.view(), 1, 1, true).is_some());
    }

    /// The cost model's choice for `batch` sequences of `steps` steps, `channels` to `filters`,
    /// with a kernel kept for many calls, or used for `one_call`.
    fn takes_fft(batch: usize, steps: usize, channels: usize, filters: usize, kernel_size: usize, one_call: bool) -> bool {
        let params = Conv1dParams::new().padding(Padding::Same);
        let geo = Geometry::new([batch, steps, channels], [kernel_size, channels, filters], None, &params).unwrap();
        relative_cost::<f32>(&geo, one_call) < MAX_RELATIVE_COST
    }

    #[test]
    fn long_kernels_on_long_inputs_take_the_fft() {
        for one_call in [false, true] {
            assert!(takes_fft(4, 8192, 16, 16, 255, one_call));
            assert!(takes_fft(4, 4096, 32, 32, 31, one_call));
            assert!(takes_fft(4, 16000, 1, 80, 127, one_call));
        }
        // Measured 0.67 of the direct time with the spectra kept.
        assert!(takes_fft(2, 4096, 128, 128, 31, false));
        // Four filters fill half a register of the direct sum: measured 0.54-0.73.
        assert!(takes_fft(4, 4096, 4, 4, 63, false));
    }

    #[test]
    fn short_kernels_and_short_one_off_calls_stay_direct() {
        assert!(!takes_fft(4, 4096, 32, 32, 15, false));
        assert!(!takes_fft(4, 16000, 1, 80, 63, false));
        assert!(!takes_fft(4, 4096, 8, 8, 31, false));
        // The depthwise kernel: the FFT measured 9 times slower on depthwise31.
        let params = Conv1dParams::new().padding(Padding::Same).groups(256);
        let geo = Geometry::new([8, 1024, 256], [31, 1, 256], None, &params).unwrap();
        assert!(relative_cost::<f32>(&geo, false) >= MAX_RELATIVE_COST);
        // Three blocks split unevenly over two threads: measured 1.05-1.27 of the direct time.
        assert!(!takes_fft(1, 512, 32, 32, 31, false));
        // Transforming the kernel costs more than these calls' direct sums.
        assert!(!takes_fft(1, 256, 64, 64, 19, true));
        assert!(!takes_fft(2, 4096, 128, 128, 31, true));
    }
}
