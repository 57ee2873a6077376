//! One filter per input channel (`groups == in_channels == filters`): each output step is a
//! short dot product per channel, so the kernel vectorises across channels instead of
//! filters, where the GEMM path would waste all but one lane of its filter block.
//! Accumulators for `ROWS` output steps x `LANES` channels stay in registers over all taps.

use super::aligned::LineAligned;
use super::tile::{tile_source, TileLayout, TileSource, TILE_TARGET_BYTES};
use super::{for_each_item, min_tiles, use_avx2, Element, SharedOut, Simd};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};
use std::mem::MaybeUninit;

/// Weights as `[tap][channel]`.
#[derive(Debug, Clone)]
pub struct DepthwiseWeights<T: Element> {
    pub data: LineAligned<T>,
    pub kernel_size: usize,
    pub channels: usize,
}

impl<T: Element> DepthwiseWeights<T> {
    /// Packs a Keras-layout depthwise kernel `(kernel_size, 1, channels)`.
    pub fn new(kernel: ArrayView3<T>) -> Self {
        let (kernel_size, _, channels) = kernel.dim();
        let mut data = LineAligned::zeros(kernel.len());
        for (w, &v) in data.iter_mut().zip(kernel.iter()) {
            *w = v;
        }
        DepthwiseWeights { data, kernel_size, channels }
    }
}

/// Output steps computed together, sharing each weight load; tiles hold a whole number of
/// them. Eight keep eight independent sums in flight per register of channels, enough to
/// hide the multiply-add's latency (the AVX2 kernel takes them four at a time).
pub const ROWS: usize = 8;
/// Taps taken together where consecutive taps and rows read the same input rows: as many as
/// leave AVX2 registers for their weights (depthwise31 measured 12-17% faster with 2, 3 or 4).
#[cfg(target_arch = "x86_64")]
const TAPS_AT_ONCE: usize = 3;
/// Data cache per core that a group of channel blocks is sized for.
const L1_BYTES: usize = 32 * 1024;

/// Runs the depthwise convolution into `out` (standard layout of `geo.output_shape()`),
/// writing every element.
pub fn run<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    weights: &DepthwiseWeights<T>,
    bias: Option<ArrayView1<T>>,
    simd: Simd,
    parallel: bool,
    out: &mut [MaybeUninit<T>],
) {
    let channels = geo.in_channels;
    if geo.batch == 0 || geo.out_steps == 0 || channels == 0 {
        return;
    }
    if super::depthwise_steps::applies(geo, &x) {
        return super::depthwise_steps::run(geo, x, weights, bias, use_avx2(simd), parallel, out);
    }
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    let layout = TileLayout::choose(geo, ROWS, channels, std::mem::size_of::<T>(), TILE_TARGET_BYTES, min_tiles(geo, parallel, geo.batch));
    let steps = layout.steps;
    let tiles = geo.out_steps.div_ceil(steps);
    let bias: Vec<T> = match bias {
        Some(b) => b.to_vec(),
        None => vec![T::zero(); channels],
    };
    let out_ptr = SharedOut(out.as_mut_ptr().cast::<T>());
    let fused = use_avx2(simd);
    let elem = std::mem::size_of::<T>();
    // As in the GEMM path: outputs far larger than the caches are written around them.
    let stream = fused
        && geo.data_format == DataFormat::ChannelsLast
        && out.len() * elem >= super::gemm::STREAM_MIN_BYTES
        && (out.as_ptr() as usize).is_multiple_of(16)
        && (channels * elem).is_multiple_of(16);
    let job = Job { geo, weights: &weights.data, bias: &bias, layout, out: out_ptr, stream };
    let transpose = T::transpose(simd);

    for_each_item::<T, _>(geo.batch * tiles, layout.rows * channels, parallel, |item, tile| {
        let (n, index) = (item / tiles, item % tiles);
        let t0 = index * steps;
        let source = tile_source(geo, &layout, &x, n, 0, channels, t0, tile, transpose);
        #[cfg(target_arch = "x86_64")]
        if fused {
            // SAFETY: `fused` is only true when AVX2 and FMA were detected.
            unsafe { job.tile_fma(n, t0, source) };
            if stream {
                super::microkernel::x86::store_fence();
            }
            return;
        }
        job.tile::<false>(n, t0, source);
    });
}

/// What every work item shares.
struct Job<'a, T> {
    geo: &'a Geometry,
    weights: &'a [T],
    bias: &'a [T],
    layout: TileLayout,
    out: SharedOut<T>,
    stream: bool,
}

impl<T: Element> Job<'_, T> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_fma(&self, n: usize, t0: usize, source: TileSource<T>) {
        self.tile::<true>(n, t0, source);
    }

    /// All output steps of one tile, `ROWS` at a time, channels in register-sized blocks.
    #[inline(always)]
    fn tile<const FUSED: bool>(&self, n: usize, t0: usize, source: TileSource<T>) {
        let geo = self.geo;
        let channels = geo.in_channels;
        let t_end = (t0 + self.layout.steps).min(geo.out_steps);
        let block = T::depthwise_block(if FUSED { Simd::Auto } else { Simd::Portable });
        let (out_row, out_lane) = match geo.data_format {
            DataFormat::ChannelsLast => (channels, 1),
            DataFormat::ChannelsFirst => (1, geo.out_steps),
        };
        let out_base = match geo.data_format {
            DataFormat::ChannelsLast => (n * geo.out_steps + t0) * channels,
            DataFormat::ChannelsFirst => n * channels * geo.out_steps + t0,
        };
        let args = |c: usize, blocks: usize| DepthwiseArgs {
            // SAFETY: channel c of the tile's first row is inside it.
            input: unsafe { source.ptr.add(c) },
            row_stride: self.layout.row_step * source.pitch,
            tap_stride: self.layout.tap_step * source.pitch,
            taps: geo.kernel_size,
            weights: self.weights[c..].as_ptr(),
            weight_stride: channels,
            bias: self.bias[c..].as_ptr(),
            // SAFETY: the offset addresses an output element of this work item.
            out: unsafe { self.out.get().add(out_base + c * out_lane) },
            out_row,
            out_lane,
            rows: t_end - t0,
            blocks,
            stream: self.stream,
        };
        let full = channels / block.lanes;
        // Blocks taken together: as many as keep the rows that ROWS steps read within half of
        // L1, so every tap after the first hits it. With channels_first the output lanes are
        // far apart, and one block at a time writes each output line in one go.
        let window_rows = (ROWS - 1) * self.layout.row_step + (geo.kernel_size - 1) * self.layout.tap_step + 1;
        let block_bytes = window_rows * block.lanes * std::mem::size_of::<T>();
        let chunk = match geo.data_format {
            DataFormat::ChannelsLast => (L1_BYTES / 2 / block_bytes).clamp(1, full.max(1)),
            DataFormat::ChannelsFirst => 1,
        };
        // SAFETY: the tile covers every tap of its steps rounded up to ROWS (TileLayout),
        // weights and bias have every channel from c, and steps t0..t_end of these channels
        // belong to this work item alone.
        unsafe {
            for first in (0..full).step_by(chunk) {
                (block.run)(args(first * block.lanes, chunk.min(full - first)));
            }
            for c in full * block.lanes..channels {
                block_generic::<T, 1, FUSED>(args(c, 1));
            }
        }
    }
}

/// Operands of `blocks` adjacent blocks of `lanes` channels over a tile's output steps.
#[derive(Clone, Copy)]
pub struct DepthwiseArgs<T> {
    /// Packed input: tap `j` of output row `r`, channel `l` at `input[r * row_stride + j * tap_stride + l]`.
    pub input: *const T,
    pub row_stride: usize,
    pub tap_stride: usize,
    pub taps: usize,
    /// Weight of tap `j`, channel `l` at `weights[j * weight_stride + l]`.
    pub weights: *const T,
    pub weight_stride: usize,
    pub bias: *const T,
    /// Output of row `r`, channel `l` at `out[r * out_row + l * out_lane]`; rows `< rows` are
    /// written, computed `ROWS` at a time (inputs must exist up to `rows` rounded up to `ROWS`).
    pub out: *mut T,
    pub out_row: usize,
    pub out_lane: usize,
    pub rows: usize,
    /// Blocks of `lanes` channels side by side. Each group of `ROWS` steps is finished across
    /// all of them before the next, so memory is read row by row, in order, where the
    /// hardware prefetcher follows it, instead of down one block's column of lines.
    pub blocks: usize,
    /// Write around the caches (16-byte aligned rows with unit lane stride only).
    pub stream: bool,
}

/// A depthwise block kernel and the channels it handles at once.
#[derive(Clone, Copy)]
pub struct DepthwiseBlock<T> {
    pub lanes: usize,
    /// # Safety
    /// Every pointer in the arguments addresses what its field documents, for `lanes` channels.
    pub run: unsafe fn(DepthwiseArgs<T>),
}

/// Portable block: the compiler vectorises the `W` lanes; fused multiply-add when `FUSED`.
///
/// # Safety
/// As [`DepthwiseBlock::run`] with `lanes = W`.
#[inline(always)]
pub unsafe fn block_generic<T: Element, const W: usize, const FUSED: bool>(a: DepthwiseArgs<T>) {
    // Half of ROWS: eight steps' sums spill out of the registers of a portable build.
    const STEPS: usize = ROWS / 2;
    for start in (0..a.rows).step_by(STEPS) {
        for b in 0..a.blocks {
            let c = b * W;
            let mut acc = [[T::zero(); W]; STEPS];
            for j in 0..a.taps {
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    for (l, v) in acc_row.iter_mut().enumerate() {
                        // SAFETY: in bounds by the caller's contract.
                        let (x, w) = unsafe {
                            (
                                *a.input.add((start + r) * a.row_stride + j * a.tap_stride + c + l),
                                *a.weights.add(j * a.weight_stride + c + l),
                            )
                        };
                        *v = if FUSED { x.mul_add(w, *v) } else { *v + x * w };
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate().take(a.rows - start) {
                for (l, v) in acc_row.iter().enumerate() {
                    // SAFETY: in bounds by the caller's contract.
                    unsafe { *a.out.add((start + r) * a.out_row + (c + l) * a.out_lane) = *v + *a.bias.add(c + l) };
                }
            }
        }
    }
}

/// Asks for block `c`'s `lanes` channels of the newest tap's input rows of output steps
/// `first..first + steps`, which the next group of steps reads for the first time, while this
/// one computes: demand misses on them stall every block, and all blocks' lines at once stall
/// the loads of the first (see `microkernel::Ahead`). A prefetch does not fault, so rows past
/// the tile need no check.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_next_rows<T>(a: &DepthwiseArgs<T>, first: usize, steps: usize, c: usize, lanes: usize) {
    let newest_tap = (a.taps - 1) * a.tap_stride;
    for r in 0..steps {
        let row = a.input.wrapping_add((first + r) * a.row_stride + newest_tap + c);
        crate::kernel::prefetch_lines(row, lanes * std::mem::size_of::<T>());
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::{prefetch_next_rows, DepthwiseArgs, TAPS_AT_ONCE};
    use std::arch::x86_64::*;

    /// Steps per pass: their 4 x 2 registers of sums, 3 x 2 of weights and 2 of inputs fill
    /// AVX2's 16 registers.
    const ROWS: usize = 4;

    macro_rules! depthwise_block {
        ($name:ident, $t:ty, $lanes:expr, $step:expr, $zero:ident, $load:ident, $fma:ident, $add:ident, $store:ident,
         $stream:ident, $cast_low:ident, $high:ident, $quarter:expr) => {
            /// `ROWS` steps x two registers of channels, accumulators in registers across all taps.
            ///
            /// # Safety
            /// As `DepthwiseBlock::run`; the CPU has AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            pub unsafe fn $name(a: DepthwiseArgs<$t>) {
                for start in (0..a.rows).step_by(ROWS) {
                    for b in 0..a.blocks {
                        let c = b * $lanes;
                        prefetch_next_rows(&a, start + ROWS, ROWS, c, $lanes);
                        let mut acc = [[$zero(); 2]; ROWS];
                        // SAFETY: rows start..start+ROWS exist in the tile (caller's contract).
                        let input = unsafe { a.input.add(start * a.row_stride + c) };
                        // With rows and taps equally far apart (stride equal to dilation), row r's tap
                        // j + t reads what row r + t's tap j does: U taps at a time share their
                        // loads of the input, ROWS + U - 1 rows for U * ROWS multiply-adds per
                        // register instead of one load per multiply-add. Each row still adds its
                        // taps in order.
                        const U: usize = TAPS_AT_ONCE;
                        let grouped = if a.row_stride == a.tap_stride { a.taps / U * U } else { 0 };
                        for j in (0..grouped).step_by(U) {
                            // SAFETY: taps j..j + U of every row exist (caller's contract); input
                            // row u of tap j is row u - t of tap j + t.
                            unsafe {
                                let w: [[_; 2]; U] = std::array::from_fn(|t| {
                                    let w = a.weights.add((j + t) * a.weight_stride + c);
                                    [$load(w), $load(w.add($step))]
                                });
                                let x = input.add(j * a.tap_stride);
                                for u in 0..ROWS + U - 1 {
                                    let xr = x.add(u * a.row_stride);
                                    let (x0, x1) = ($load(xr), $load(xr.add($step)));
                                    for t in (0..U).rev() {
                                        if u >= t && u - t < ROWS {
                                            acc[u - t][0] = $fma(x0, w[t][0], acc[u - t][0]);
                                            acc[u - t][1] = $fma(x1, w[t][1], acc[u - t][1]);
                                        }
                                    }
                                }
                            }
                        }
                        for j in grouped..a.taps {
                            // SAFETY: tap j's weights and inputs exist for every row (caller's contract).
                            unsafe {
                                let w = a.weights.add(j * a.weight_stride + c);
                                let (w0, w1) = ($load(w), $load(w.add($step)));
                                let x = input.add(j * a.tap_stride);
                                for (r, row) in acc.iter_mut().enumerate() {
                                    let xr = x.add(r * a.row_stride);
                                    row[0] = $fma($load(xr), w0, row[0]);
                                    row[1] = $fma($load(xr.add($step)), w1, row[1]);
                                }
                            }
                        }
                        // SAFETY: output rows below `rows` belong to the caller; bias has every lane.
                        unsafe {
                            let (b0, b1) = ($load(a.bias.add(c)), $load(a.bias.add(c + $step)));
                            for (r, row) in acc.iter().enumerate().take(a.rows - start) {
                                let (v0, v1) = ($add(row[0], b0), $add(row[1], b1));
                                let out = a.out.add((start + r) * a.out_row + c * a.out_lane);
                                if a.stream {
                                    $stream(out, $cast_low(v0));
                                    $stream(out.add($quarter), $high(v0, 1));
                                    $stream(out.add($step), $cast_low(v1));
                                    $stream(out.add($step + $quarter), $high(v1, 1));
                                } else if a.out_lane == 1 {
                                    $store(out, v0);
                                    $store(out.add($step), v1);
                                } else {
                                    let mut lanes = [0.0 as $t; $lanes];
                                    $store(lanes.as_mut_ptr(), v0);
                                    $store(lanes.as_mut_ptr().add($step), v1);
                                    for (l, v) in lanes.iter().enumerate() {
                                        *out.add(l * a.out_lane) = *v;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
    }

    depthwise_block!(f32_4x16, f32, 16, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps,
        _mm_stream_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, 4);
    depthwise_block!(f64_4x8, f64, 8, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_fmadd_pd, _mm256_add_pd, _mm256_storeu_pd,
        _mm_stream_pd, _mm256_castpd256_pd128, _mm256_extractf128_pd, 2);
}

/// The depthwise kernel in zmm registers: one register holds a block's channels, so `ROWS`
/// steps keep eight independent sums where the AVX2 kernel's four steps keep eight in two
/// registers each, with half the loads per multiply-add. The same sums in the same order.
#[cfg(target_arch = "x86_64")]
pub mod avx512 {
    use super::{prefetch_next_rows, DepthwiseArgs, ROWS, TAPS_AT_ONCE};
    use crate::kernel::microkernel::x86::{stream_half_zmm, stream_half_zmm_pd};
    use std::arch::x86_64::*;

    macro_rules! depthwise_zmm {
        ($name:ident, $features:literal, $t:ty, $lanes:expr, $zero:ident, $load:ident, $fma:ident, $add:ident, $store:ident,
         $stream_half:ident, $low:ident, $high:ident) => {
            /// `ROWS` steps x one zmm register of channels, accumulators in registers across all taps.
            ///
            /// # Safety
            /// As `DepthwiseBlock::run`; the CPU has AVX-512 (F and DQ), AVX2 and FMA.
            #[target_feature(enable = $features)]
            pub unsafe fn $name(a: DepthwiseArgs<$t>) {
                for start in (0..a.rows).step_by(ROWS) {
                    for b in 0..a.blocks {
                        let c = b * $lanes;
                        prefetch_next_rows(&a, start + ROWS, ROWS, c, $lanes);
                        let mut acc = [$zero(); ROWS];
                        // SAFETY: rows start..start+ROWS exist in the tile (caller's contract).
                        let input = unsafe { a.input.add(start * a.row_stride + c) };
                        // Taps grouped as in the AVX2 kernel, each input row loaded once per group.
                        const U: usize = TAPS_AT_ONCE;
                        let grouped = if a.row_stride == a.tap_stride { a.taps / U * U } else { 0 };
                        for j in (0..grouped).step_by(U) {
                            // SAFETY: taps j..j + U of every row exist (caller's contract); input
                            // row u of tap j is row u - t of tap j + t.
                            unsafe {
                                let w: [_; U] = std::array::from_fn(|t| $load(a.weights.add((j + t) * a.weight_stride + c)));
                                let x = input.add(j * a.tap_stride);
                                for u in 0..ROWS + U - 1 {
                                    let xu = $load(x.add(u * a.row_stride));
                                    for t in (0..U).rev() {
                                        if u >= t && u - t < ROWS {
                                            acc[u - t] = $fma(xu, w[t], acc[u - t]);
                                        }
                                    }
                                }
                            }
                        }
                        for j in grouped..a.taps {
                            // SAFETY: tap j's weights and inputs exist for every row (caller's contract).
                            unsafe {
                                let w = $load(a.weights.add(j * a.weight_stride + c));
                                let x = input.add(j * a.tap_stride);
                                for (r, sum) in acc.iter_mut().enumerate() {
                                    *sum = $fma($load(x.add(r * a.row_stride)), w, *sum);
                                }
                            }
                        }
                        // SAFETY: output rows below `rows` belong to the caller; bias has every lane.
                        unsafe {
                            let bias = $load(a.bias.add(c));
                            // Constant indices into the sums (a loop bounded by the rows left would
                            // keep them in memory, stored after every multiply-add).
                            let rows = a.rows - start;
                            for r in 0..ROWS {
                                if r >= rows {
                                    break;
                                }
                                let v = $add(acc[r], bias);
                                let out = a.out.add((start + r) * a.out_row + c * a.out_lane);
                                if a.stream {
                                    $stream_half(out, $low(v));
                                    $stream_half(out.add($lanes / 2), $high(v, 1));
                                } else if a.out_lane == 1 {
                                    $store(out, v);
                                } else {
                                    let mut lanes = [0.0 as $t; $lanes];
                                    $store(lanes.as_mut_ptr(), v);
                                    for (l, v) in lanes.iter().enumerate() {
                                        *out.add(l * a.out_lane) = *v;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
    }

    depthwise_zmm!(f32_8x16, "avx2,fma,avx512f,avx512dq", f32, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_add_ps,
        _mm512_storeu_ps, stream_half_zmm, _mm512_castps512_ps256, _mm512_extractf32x8_ps);
    depthwise_zmm!(f64_8x8, "avx2,fma,avx512f", f64, 8, _mm512_setzero_pd, _mm512_loadu_pd, _mm512_fmadd_pd, _mm512_add_pd,
        _mm512_storeu_pd, stream_half_zmm_pd, _mm512_castpd512_pd256, _mm512_extractf64x4_pd);
}
