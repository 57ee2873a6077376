//! Input tiles: the rows of input that a run of output steps reads, copied once into a
//! contiguous zero-padded buffer so kernels see no padding, layout or stride.

use super::transpose::{Transpose, TransposeFn, Walk};
use super::Element;
use crate::geometry::Geometry;
use ndarray::ArrayView3;

/// Most input elements one work item packs, so per-call extra memory stays bounded.
pub const MAX_TILE_ELEMENTS: usize = 1 << 20;
/// Input bytes per tile that keep it in L2 next to a filter block's weights.
pub const TILE_TARGET_BYTES: usize = 96 * 1024;
/// Input bytes per tile when a filter block's weights are too large for L1: each pass of
/// those weights (from L2 or L3) then serves more output steps.
pub const LARGE_TILE_TARGET_BYTES: usize = 256 * 1024;

/// How output rows map onto a packed input tile.
#[derive(Clone, Copy, Debug)]
pub struct TileLayout {
    /// Output steps per work item (a multiple of MR).
    pub steps: usize,
    /// Packed rows between consecutive output steps: the stride, or the window when
    /// windows do not overlap (then only the windows are packed, not the gaps).
    pub row_step: usize,
    /// Packed rows between consecutive taps.
    pub tap_step: usize,
    /// Packed rows in the tile.
    pub rows: usize,
    /// True when each output row's taps are packed side by side (im2col of MR rows),
    /// used when the contiguous tile would be too large (huge dilation).
    pub im2col: bool,
}

impl TileLayout {
    /// A tile of `channels` channels whose step count is a multiple of `mr`, of about
    /// `target_bytes` (at least `mr` steps), and short enough that the output steps make at
    /// least `min_tiles` tiles where they can.
    pub fn choose(geo: &Geometry, mr: usize, channels: usize, elem: usize, target_bytes: usize, min_tiles: usize) -> Self {
        let cg = channels;
        let span = geo.halo() + 1;
        let row_step = geo.strides.min(span);
        let max_steps = geo.out_steps.div_ceil(min_tiles.max(1)).div_ceil(mr) * mr;
        // Smallest tile is MR steps; grow it while it stays in the byte budget.
        let rows_for = |steps: usize| (steps - 1) * row_step + span;
        let mut steps = mr;
        while steps < max_steps.min(2048) && rows_for(steps * 2) * cg * elem <= target_bytes {
            steps *= 2;
        }
        let steps = steps.min(max_steps).max(mr);
        let rows = rows_for(steps);
        // A span far longer than the input (huge dilation with padding) would pack mostly
        // zeros: gather each row's taps instead.
        let mostly_padding = rows > 4 * geo.steps + 64 * mr;
        if rows.saturating_mul(cg) <= MAX_TILE_ELEMENTS && !mostly_padding {
            return TileLayout { steps, row_step, tap_step: geo.dilation_rate, rows, im2col: false };
        }
        // Taps far apart: pack each output row's taps contiguously instead.
        TileLayout { steps: mr, row_step: geo.kernel_size, tap_step: 1, rows: mr * geo.kernel_size, im2col: true }
    }

    /// Input step packed at tile row `r` for a tile starting at output step `t0`, or None when padding.
    #[inline]
    pub fn input_step(&self, geo: &Geometry, t0: usize, r: usize) -> Option<usize> {
        let (i, q) = if self.im2col {
            (r / self.row_step, (r % self.row_step) * geo.dilation_rate)
        } else {
            let i = (r / self.row_step).min(self.steps - 1);
            (i, r - i * self.row_step)
        };
        let step = geo.first_input_step(t0 + i) + q as isize;
        (step >= 0 && (step as usize) < geo.steps).then_some(step as usize)
    }
}

/// Where a tile's rows are: `ptr` to row 0, channel `c0`, rows `pitch` elements apart.
#[derive(Clone, Copy)]
pub struct TileSource<T> {
    pub ptr: *const T,
    pub pitch: usize,
}

/// The tile's rows, read in place from `x` when they are all inside the input with unit
/// channel stride (no padding to add, no layout to change), else packed into `packed`.
pub fn tile_source<T: Element>(
    geo: &Geometry,
    layout: &TileLayout,
    x: &ArrayView3<T>,
    n: usize,
    c0: usize,
    cg: usize,
    t0: usize,
    packed: &mut [T],
    transpose: TransposeFn<T>,
) -> TileSource<T> {
    let strides = x.strides();
    let first = geo.first_input_step(t0);
    let in_place = !layout.im2col
        && layout.row_step == geo.strides
        && strides[2] == 1
        && strides[1] > 0
        && first >= 0
        && first as usize + layout.rows <= geo.steps;
    if in_place {
        // SAFETY: n < batch, c0 < channels and `first` < steps were checked, so this element exists;
        // rows first..first + layout.rows are all inside the input.
        let ptr = unsafe { x.uget([n, first as usize, c0]) } as *const T;
        return TileSource { ptr, pitch: strides[1] as usize };
    }
    pack_tile(geo, layout, x, n, c0, cg, t0, packed, transpose);
    TileSource { ptr: packed.as_ptr(), pitch: cg }
}

/// Packs channels `c0..c0 + cg` of the input rows that the tile starting at output step `t0`
/// reads, as `[row][channel]`, zero where the input is padded. `transpose` turns
/// channels_first `[channel][step]` rows into `[step][channel]` ones.
#[allow(clippy::too_many_arguments)]
pub fn pack_tile<T: Element>(
    geo: &Geometry,
    layout: &TileLayout,
    x: &ArrayView3<T>,
    n: usize,
    c0: usize,
    cg: usize,
    t0: usize,
    packed: &mut [T],
    transpose: TransposeFn<T>,
) {
    let strides = x.strides();
    let (step_stride, channel_stride) = (strides[1], strides[2]);
    // SAFETY: n < batch, c0 < channels and steps > 0 whenever there is output, so this element exists.
    let base = unsafe { x.uget([n, 0, c0]) } as *const T;
    let rows = &mut packed[..layout.rows * cg];
    if channel_stride == 1 {
        for (r, row) in rows.chunks_exact_mut(cg).enumerate() {
            match layout.input_step(geo, t0, r) {
                Some(step) => {
                    // SAFETY: `step < steps`, and channels c0..c0+cg are contiguous.
                    let src = unsafe { std::slice::from_raw_parts(base.offset(step as isize * step_stride), cg) };
                    row.copy_from_slice(src);
                }
                None => row.fill(T::zero()),
            }
        }
    } else if let Some(inside) = consecutive_rows(geo, layout, t0).filter(|_| step_stride == 1 && channel_stride > 0) {
        // channels_first with tile row r at input step first + r: the rows inside the input
        // are one block of [channel][step], transposed in registers, a few channels at a time.
        rows[..inside.start * cg].fill(T::zero());
        rows[inside.end * cg..].fill(T::zero());
        if !inside.is_empty() {
            let first = geo.first_input_step(t0) + inside.start as isize;
            let block = Transpose {
                // SAFETY: steps first.. of channel c0 of batch item n are inside the input.
                src: unsafe { base.offset(first) },
                src_pitch: channel_stride as usize,
                rows: cg,
                cols: inside.len(),
                dst: rows[inside.start * cg..].as_mut_ptr(),
                dst_pitch: cg,
                walk: Walk::Source,
            };
            // SAFETY: channels c0..c0 + cg of steps first..first + inside.len() are elements of
            // x (a view, never aliasing the tile), and the tile has inside.len() rows of cg from
            // row inside.start.
            unsafe { transpose(block) };
        }
    } else {
        // Channels are not contiguous (channels_first). Channels are taken a few at a time down
        // all rows, so each source line is read whole while it is in L1: channel rows a power of
        // two apart share a cache set, and row by row across every channel evicts them.
        const CHANNELS_AT_ONCE: usize = 8;
        for first in (0..cg).step_by(CHANNELS_AT_ONCE) {
            let width = CHANNELS_AT_ONCE.min(cg - first);
            for r in 0..layout.rows {
                let row = &mut rows[r * cg + first..][..width];
                match layout.input_step(geo, t0, r) {
                    Some(step) => {
                        for (c, v) in row.iter_mut().enumerate() {
                            // SAFETY: `step < steps` and `first + c < cg`: an element of x.
                            *v = unsafe { *base.offset(step as isize * step_stride + (first + c) as isize * channel_stride) };
                        }
                    }
                    None => row.fill(T::zero()),
                }
            }
        }
    }
}

/// The tile rows that lie inside the input when row `r` is input step `first + r` (no gaps
/// between windows, no im2col), else None.
fn consecutive_rows(geo: &Geometry, layout: &TileLayout, t0: usize) -> Option<std::ops::Range<usize>> {
    if layout.im2col || layout.row_step != geo.strides {
        return None;
    }
    let first = geo.first_input_step(t0);
    let start = if first < 0 { first.unsigned_abs().min(layout.rows) } else { 0 };
    let end = (geo.steps as isize - first).clamp(0, layout.rows as isize) as usize;
    Some(start..end.max(start))
}
