//! One filter per input channel (`groups == in_channels == filters`): each output step is a
//! short dot product per channel, so the kernel vectorises across channels instead of
//! filters, where the GEMM path would waste all but one lane of its filter block.
//! Accumulators for `ROWS` output steps x `LANES` channels stay in registers over all taps.

use super::tile::{pack_tile, TileLayout};
use super::{for_each_item, use_avx2, Element, SharedOut, Simd};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};
use std::mem::MaybeUninit;

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

/// Output steps computed together, sharing each weight load.
const ROWS: usize = 4;

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
    let layout = TileLayout::choose(geo, ROWS, channels, std::mem::size_of::<T>());
    let steps = layout.steps;
    let tiles = geo.out_steps.div_ceil(steps);
    let bias: Vec<T> = match bias {
        Some(b) => b.to_vec(),
        None => vec![T::zero(); channels],
    };
    let out_ptr = SharedOut(out.as_mut_ptr().cast::<T>());
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    let fused = use_avx2(simd);
    let job = Job { geo, weights: &weights.data, bias: &bias, layout, out: out_ptr };

    for_each_item::<T, _>(geo.batch * tiles, layout.rows * channels, parallel, |item, tile| {
        let (n, index) = (item / tiles, item % tiles);
        let t0 = index * steps;
        pack_tile(geo, &layout, &x, n, 0, channels, t0, tile);
        #[cfg(target_arch = "x86_64")]
        if fused {
            // SAFETY: `fused` is only true when AVX2 and FMA were detected.
            unsafe { job.tile_fma(n, t0, tile) };
            return;
        }
        job.tile::<false>(n, t0, tile);
    });
}

/// What every work item shares.
struct Job<'a, T> {
    geo: &'a Geometry,
    weights: &'a [T],
    bias: &'a [T],
    layout: TileLayout,
    out: SharedOut<T>,
}

impl<T: Element> Job<'_, T> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_fma(&self, n: usize, t0: usize, tile: &[T]) {
        self.tile::<true>(n, t0, tile);
    }

    /// All output steps of one tile, `ROWS` at a time, channels in register-sized blocks.
    #[inline(always)]
    fn tile<const FUSED: bool>(&self, n: usize, t0: usize, tile: &[T]) {
        let t_end = (t0 + self.layout.steps).min(self.geo.out_steps);
        let lanes = if std::mem::size_of::<T>() == 4 { 16 } else { 8 };
        for t in (t0..t_end).step_by(ROWS) {
            let rows = ROWS.min(t_end - t);
            // im2col tiles hold one group of ROWS steps, packed for that group alone.
            debug_assert!(!self.layout.im2col || t == t0);
            let mut c = 0;
            while c + lanes <= self.geo.in_channels {
                if lanes == 16 {
                    self.block::<16, FUSED>(n, t, t - t0, rows, c, tile);
                } else {
                    self.block::<8, FUSED>(n, t, t - t0, rows, c, tile);
                }
                c += lanes;
            }
            for c in c..self.geo.in_channels {
                self.block::<1, FUSED>(n, t, t - t0, rows, c, tile);
            }
        }
    }

    /// Output steps `t..t + rows` (tile-local `local`) for channels `c..c + W`.
    #[inline(always)]
    fn block<const W: usize, const FUSED: bool>(&self, n: usize, t: usize, local: usize, rows: usize, c: usize, tile: &[T]) {
        let geo = self.geo;
        let channels = geo.in_channels;
        let mut acc = [[T::zero(); W]; ROWS];
        for j in 0..geo.kernel_size {
            let w: &[T; W] = self.weights[j * channels + c..][..W].try_into().expect("W weights");
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let row = (local + r) * self.layout.row_step + j * self.layout.tap_step;
                let xs: &[T; W] = tile[row * channels + c..][..W].try_into().expect("W inputs");
                for l in 0..W {
                    acc_row[l] = if FUSED { xs[l].mul_add(w[l], acc_row[l]) } else { acc_row[l] + xs[l] * w[l] };
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate().take(rows) {
            for l in 0..W {
                let index = match geo.data_format {
                    DataFormat::ChannelsLast => (n * geo.out_steps + t + r) * channels + c + l,
                    DataFormat::ChannelsFirst => (n * channels + c + l) * geo.out_steps + t + r,
                };
                // SAFETY: step t + r < out_steps of batch item n belongs to this work item alone.
                unsafe { *self.out.get().add(index) = acc_row[l] + self.bias[c + l] };
            }
        }
    }
}

