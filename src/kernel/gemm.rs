//! The general path: for each batch item and group, output steps x filters is a GEMM
//! whose left operand is the (never materialised) im2col matrix. Each work item copies the
//! input rows its output steps read into a contiguous, zero-padded tile, and the
//! micro-kernel reads every tap straight from that tile. Extra memory is one tile per worker.

use super::aligned::LineAligned;
use super::microkernel::{Ahead, KernelFn, Lhs, MicroKernel, Strip, MAX_TILE, PREFETCH_MAX_BYTES};
use super::tile::{tile_source, TileLayout, TileSource, LARGE_TILE_TARGET_BYTES, TILE_TARGET_BYTES};
use super::transpose::{Transpose, Walk};
use super::{for_each_item, min_tiles, Element, SharedOut, Simd};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};
use std::mem::MaybeUninit;

/// Kernel weights in micro-kernel order: `[group][filter block][tap * in_per_group + c][NR]`,
/// zero past the group's last filter.
#[derive(Debug, Clone)]
pub struct PackedWeights<T: Element> {
    pub data: LineAligned<T>,
    pub nr: usize,
    pub kernel_size: usize,
    pub in_per_group: usize,
    pub filters: usize,
    pub groups: usize,
}

impl<T: Element> PackedWeights<T> {
    /// Packs a Keras-layout kernel `(kernel_size, in_per_group, filters)`.
    pub fn new(kernel: ArrayView3<T>, groups: usize, nr: usize) -> Self {
        let (kernel_size, in_per_group, filters) = kernel.dim();
        let fg = filters / groups;
        let blocks = fg.div_ceil(nr);
        let depth = kernel_size * in_per_group;
        let mut data = LineAligned::zeros(groups * blocks * depth * nr);
        for g in 0..groups {
            for fb in 0..blocks {
                let panel = &mut data[(g * blocks + fb) * depth * nr..][..depth * nr];
                for j in 0..kernel_size {
                    for c in 0..in_per_group {
                        let row = &mut panel[(j * in_per_group + c) * nr..][..nr];
                        for (jj, slot) in row.iter_mut().enumerate() {
                            let o = fb * nr + jj;
                            if o < fg {
                                *slot = kernel[[j, c, g * fg + o]];
                            }
                        }
                    }
                }
            }
        }
        PackedWeights { data, nr, kernel_size, in_per_group, filters, groups }
    }

    fn blocks_per_group(&self) -> usize {
        (self.filters / self.groups).div_ceil(self.nr)
    }

    fn depth(&self) -> usize {
        self.kernel_size * self.in_per_group
    }
}

/// Largest weights of one group for which output panels are finished across all filters.
const PANEL_MAJOR_MAX_BYTES: usize = 24 * 1024;
/// Level-1 data cache: a filter block's weights larger than this are read from L2 or L3.
const L1_BYTES: usize = 32 * 1024;
/// Most weights of the groups one work item computes together (they stay in L2).
const GROUP_CHUNK_MAX_BYTES: usize = 128 * 1024;

/// Weights of one group from which no cache keeps them from one tile of steps to the next:
/// above this, the channel sum is taken a slice of channels at a time (see [`ChannelSlices`]).
const SLICE_MIN_WEIGHT_BYTES: usize = 4 << 20;
/// Weights of one slice of channels for a cache line's worth of filters (an AVX2 filter
/// block; an AVX-512 block's slice is twice this, measured 5% faster on wide_c1024 than
/// slices half as wide): a block's slice stays in L2 while a tile's panels stream past. Set
/// per line of filters, not per block, so the slices, and with them the sums, are the same
/// whichever kernel runs.
const SLICE_WEIGHT_BYTES_PER_LINE: usize = 48 * 1024;

/// Output size from which results bypass the caches.
pub(crate) const STREAM_MIN_BYTES: usize = 8 << 20;

/// Runs the convolution into `out`, a standard-layout buffer of `geo.output_shape()`.
/// `x` is viewed as `(batch, steps, channels)` whatever its memory layout.
pub fn run<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    weights: &PackedWeights<T>,
    bias: Option<ArrayView1<T>>,
    mk: MicroKernel<T>,
    simd: Simd,
    parallel: bool,
    out: &mut [MaybeUninit<T>],
) {
    debug_assert_eq!(weights.nr, mk.nr);
    let (mr, nr) = (mk.mr, mk.nr);
    let cg = geo.in_per_group();
    let fg = geo.filters_per_group();
    let blocks = weights.blocks_per_group();
    if geo.out_steps == 0 || geo.batch == 0 {
        return;
    }
    // Bias per filter block, zero padded to NR, so the micro-kernel adds it unconditionally.
    let mut bias_blocks = vec![T::zero(); geo.groups * blocks * nr];
    if let Some(b) = bias {
        // A group's blocks are adjacent, so its filters' biases are too, padded at the end.
        for (g, group) in bias_blocks.chunks_exact_mut(blocks * nr).enumerate() {
            for (o, value) in group[..fg].iter_mut().enumerate() {
                *value = b[g * fg + o];
            }
        }
    }
    // Which loop is outer: with many small groups, whose weights all stay in L1, a panel of
    // output steps is finished across all of a run of groups before the next (output written
    // row by row, the input panel read once); otherwise one filter block's weights stay in
    // cache while the panels stream past, in strips of many panels per kernel call (measured
    // faster for a single group however small its weights: 7-14% on short calls and ecg_same).
    let panel_len = weights.depth() * nr;
    let group_weight_bytes = blocks * panel_len * std::mem::size_of::<T>();
    // channels_first output is gathered per filter block (below), so blocks go outermost.
    let channels_first = geo.data_format == DataFormat::ChannelsFirst;
    let panel_major = geo.groups > 1 && group_weight_bytes <= PANEL_MAJOR_MAX_BYTES && !channels_first;
    // Small groups are taken several at a time, so that a work item reads whole input rows
    // and writes whole output rows, in order, instead of a few cache lines per row.
    let chunk = if panel_major {
        (GROUP_CHUNK_MAX_BYTES / group_weight_bytes.max(1)).clamp(1, geo.groups)
    } else {
        1
    };
    let chunks = geo.groups.div_ceil(chunk);
    let elem = std::mem::size_of::<T>();
    let slices = if panel_major || group_weight_bytes < SLICE_MIN_WEIGHT_BYTES {
        ChannelSlices::whole(cg)
    } else {
        ChannelSlices::new(cg, SLICE_WEIGHT_BYTES_PER_LINE / (geo.kernel_size * 64))
    };
    // channels_last takes the slices one after another, each over a tile of only its channels,
    // which is as many times longer: each block's slice of weights then serves that many more
    // steps. channels_first tiles hold every channel, and each call takes the slices in turn.
    let outer_slices = if channels_first { 1 } else { slices.count };
    let tile_channels = if outer_slices > 1 { slices.width } else { chunk * cg };
    let tile_bytes =
        if panel_len * elem > L1_BYTES { LARGE_TILE_TARGET_BYTES } else { TILE_TARGET_BYTES };
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;
    let layout = TileLayout::choose(geo, mr, tile_channels, elem, tile_bytes, min_tiles(geo, parallel, geo.batch * chunks));
    let tiles = geo.out_steps.div_ceil(layout.steps);
    let items = geo.batch * chunks * tiles;
    let out_ptr = SharedOut(out.as_mut_ptr().cast::<T>());
    let transpose = T::transpose(simd);
    // Outputs far larger than the caches would not stay there anyway: write around them, which
    // also saves reading each output line before writing it (measured faster however much
    // work each element takes). Only tiles whose rows span a cache line's worth of filters:
    // half-line non-temporal writes leave write-combining buffers part-filled, and flushing
    // those is slower than ordinary stores.
    let out_bytes = out.len() * elem;
    let stream = out_bytes >= STREAM_MIN_BYTES
        && slices.count == 1
        && nr * elem >= 64
        && (geo.filters * elem).is_multiple_of(16);

    // Bias of the slices before the last, which add to sums still in progress.
    let no_bias = if slices.count > 1 { vec![T::zero(); nr] } else { Vec::new() };
    let tile_len = layout.rows * tile_channels;
    // With channels_first, a filter block's outputs for the whole tile are gathered here and
    // written out one filter row at a time: writing each micro-tile's few steps per filter
    // straight out touches nr lines a power of two apart, which share a cache set.
    let block_len = if channels_first { layout.steps * nr } else { 0 };
    for_each_item::<T, _>(items, tile_len + block_len, parallel, |item, scratch| {
        let (packed, out_block) = scratch.split_at_mut(tile_len);
        let tile = item % tiles;
        let g0 = (item / tiles) % chunks * chunk;
        let n = item / (tiles * chunks);
        let groups_here = chunk.min(geo.groups - g0);
        let t_begin = tile * layout.steps;
        let t_end = (t_begin + layout.steps).min(geo.out_steps);
        let mut scratch_tile = [T::zero(); MAX_TILE];
        let panels = (t_end - t_begin).div_ceil(mr);
        let full_blocks = fg / nr;
        let full_panels = (t_end - t_begin) / mr;
        for slice in 0..outer_slices {
            let (slice_start, slice_channels) = if outer_slices > 1 { slices.range(slice) } else { (0, cg) };
            let mut source: Option<(usize, TileSource<T>)> = None;
            // Divisions cost more than a short micro-kernel call: counters step through
            // (panel, group, block), or (block, panel) when each block's weights stay in L2.
            let (mut g, mut fb, mut panel) = (g0, 0, 0);
            let mut remaining = groups_here * blocks * panels;
            while remaining > 0 {
                let t0 = t_begin + panel * mr;
                let cols = nr.min(fg - fb * nr);
                let o0 = g * fg + fb * nr;
                let b = weights.data[(g * blocks + fb) * panel_len + slice_start * nr..].as_ptr();
                let bias_ptr = bias_blocks[(g * blocks + fb) * nr..].as_ptr();
                // im2col tiles hold MR rows only: repack when the rows change.
                let start = if layout.im2col { t0 } else { t_begin };
                let tile = match source {
                    Some((s, tile)) if s == start => tile,
                    _ => {
                        let (c0, width) =
                            if outer_slices > 1 { (g0 * cg + slice_start, slice_channels) } else { (g0 * cg, groups_here * cg) };
                        let tile = tile_source(geo, &layout, &x, n, c0, width, start, packed, transpose);
                        source = Some((start, tile));
                        tile
                    }
                };
                let tap = layout.tap_step * tile.pitch;
                // When consecutive taps are adjacent in memory (dilation 1 over a tile of exactly
                // the group's channels), one contiguous run of taps * channels replaces the tap
                // loop: the same values in the same order, with less loop overhead.
                let (taps, channels) =
                    if tap == cg && slices.count == 1 { (1, geo.kernel_size * cg) } else { (geo.kernel_size, slice_channels) };
                let lhs = Lhs {
                    // SAFETY: output row t0 - start of the tile starts inside it (TileLayout), and
                    // the tile holds the channels of groups g0..g0 + groups_here.
                    ptr: unsafe { tile.ptr.add((t0 - start) * layout.row_step * tile.pitch + (g - g0) * cg) },
                    row: layout.row_step * tile.pitch,
                    tap,
                    taps,
                    channels,
                    weights_tap: cg * nr,
                };
                let rows = mr.min(geo.out_steps - t0);
                // One full block per group: a strip runs on across the chunk's groups, whose
                // channels, weights and filters follow one another.
                let across_groups = panel_major && rows == mr && blocks == 1 && full_blocks == 1;
                if panel_major && g == g0 && fb == 0 && !layout.im2col && !across_groups {
                    next_panel_rows(&layout, tile.pitch, mr, geo.kernel_size, groups_here * cg, elem).prefetch(lhs.ptr);
                }
                // Tiles that one kernel call takes in a row: the rest of this group's full filter
                // blocks (panel-major), or the rest of the tile's panels (block-major), all of whose
                // outputs go straight to their place.
                let strip = if across_groups {
                    let ahead =
                        if layout.im2col { Ahead::NONE } else { next_panel_rows(&layout, tile.pitch, mr, geo.kernel_size, cg, elem) };
                    Strip { count: g0 + groups_here - g, a: cg, b: panel_len, bias: nr, c: nr, ahead }
                } else if panel_major {
                    if rows == mr && fb < full_blocks {
                        Strip { count: full_blocks - fb, a: 0, b: panel_len, bias: nr, c: nr, ahead: Ahead::NONE }
                    } else {
                        Strip::ONE
                    }
                } else if layout.im2col {
                    Strip::ONE
                } else if channels_first {
                    // Its prefetches depend on the slice of channels: set per slice below.
                    Strip { count: panels - panel, a: lhs.row * mr, b: 0, bias: 0, c: mr * nr, ahead: Ahead::NONE }
                } else if cols == nr && panel < full_panels {
                    let a = lhs.row * mr;
                    Strip { count: full_panels - panel, a, b: 0, bias: 0, c: mr * geo.filters, ahead: ahead_down_panels(&lhs, mr, a) }
                } else {
                    Strip::ONE
                };
                if channels_first {
                    let c = out_block[(t0 - t_begin) * nr..].as_mut_ptr();
                    for part in 0..slices.count {
                        let (first, channels) = slices.range(part);
                        let lhs = if slices.count == 1 { lhs } else { Lhs { ptr: lhs.ptr.wrapping_add(first), channels, ..lhs } };
                        let strip = Strip { ahead: ahead_down_panels(&lhs, mr, strip.a), ..strip };
                        let (run, bias) = slices.pass(part, &mk, bias_ptr, &no_bias);
                        // SAFETY: as above, into rows t0 - t_begin.. of the block, which has the tile's
                        // steps (a multiple of mr) of nr filters; the strip's panels are this tile's;
                        // the slice's channels are inside the tile's and its weights inside the block's.
                        unsafe { run(lhs, b.add(first * nr), bias, c, nr, strip) };
                    }
                    if panel + strip.count == panels {
                        let block = Transpose {
                            src: out_block.as_ptr(),
                            src_pitch: nr,
                            rows: t_end - t_begin,
                            cols,
                            // SAFETY: filter o0 of batch item n starts a row inside the output.
                            dst: unsafe { out_ptr.get().add((n * geo.filters + o0) * geo.out_steps + t_begin) },
                            dst_pitch: geo.out_steps,
                            walk: Walk::Destination,
                        };
                        // SAFETY: the block holds the tile's steps of nr >= cols filters; steps
                        // t_begin..t_end of filters o0..o0 + cols of batch item n are inside the
                        // output and owned by this work item alone.
                        unsafe { transpose(block) };
                    }
                } else if rows == mr && cols == nr {
                    let offset = (n * geo.out_steps + t0) * geo.filters + o0;
                    // SAFETY: rows t0..t0+mr and filters o0..o0+nr of batch item n lie inside the
                    // output and belong to this work item alone (items split batch x groups x steps);
                    // the packed tile covers every row the micro-kernel reads (see TileLayout).
                    let c = unsafe { out_ptr.get().add(offset) };
                    let (run, bias) = slices.pass(slice, &mk, bias_ptr, &no_bias);
                    let run = if stream && (c as usize).is_multiple_of(16) { mk.run_stream } else { run };
                    // SAFETY: as above, for every tile of the strip (full rows and filters only);
                    // `run_stream` only with 16-byte aligned rows (ldc checked where `stream` is
                    // set), which the strip's steps of nr filters or mr rows keep aligned; the
                    // earlier slices wrote every element `run_acc` reads.
                    unsafe { run(lhs, b, bias, c, geo.filters, strip) };
                } else {
                    if slice > 0 {
                        // The sums so far, for `run_acc` to go on from.
                        for i in 0..rows {
                            let start = (n * geo.out_steps + t0 + i) * geo.filters + o0;
                            // SAFETY: as below; the earlier slices wrote these elements.
                            unsafe { std::ptr::copy_nonoverlapping(out_ptr.get().add(start), scratch_tile[i * nr..].as_mut_ptr(), cols) };
                        }
                    }
                    let (run, bias) = slices.pass(slice, &mk, bias_ptr, &no_bias);
                    // SAFETY: as above, into a stack tile of MAX_TILE >= mr * nr elements.
                    unsafe { run(lhs, b, bias, scratch_tile.as_mut_ptr(), nr, Strip::ONE) };
                    for i in 0..rows {
                        let start = (n * geo.out_steps + t0 + i) * geo.filters + o0;
                        // SAFETY: filters o0..o0 + cols of step t0 + i are inside the output and
                        // owned by this work item; the stack tile has nr >= cols per row.
                        unsafe { std::ptr::copy_nonoverlapping(scratch_tile[i * nr..].as_ptr(), out_ptr.get().add(start), cols) };
                    }
                }
                // A strip never runs past the end of a group's blocks (nor of the chunk's groups when
                // each has one block) or of a tile's panels.
                remaining -= strip.count;
                if panel_major {
                    if blocks == 1 {
                        g += strip.count;
                    } else {
                        fb += strip.count;
                        if fb == blocks {
                            fb = 0;
                            g += 1;
                        }
                    }
                    if g == g0 + groups_here {
                        g = g0;
                        panel += 1;
                    }
                } else {
                    panel += strip.count;
                    if panel == panels {
                        panel = 0;
                        fb += 1;
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if stream {
            super::microkernel::x86::store_fence();
        }
    });
}

/// The channels of a group, summed a slice at a time: every output's sum runs over the
/// slices in order (and within each over taps, then channels), each slice going on from the
/// sum the one before left in the output tile, so the result does not depend on how the work
/// is split between threads or on the data format, only on the slice width (a function of
/// the kernel's shape).
#[derive(Clone, Copy, Debug)]
struct ChannelSlices {
    width: usize,
    count: usize,
    channels: usize,
}

impl ChannelSlices {
    /// All channels in one slice.
    fn whole(channels: usize) -> Self {
        ChannelSlices { width: channels, count: 1, channels }
    }

    /// Slices of `width` channels rounded down to a multiple of 16 (at least 16), the last one
    /// shorter.
    fn new(channels: usize, width: usize) -> Self {
        let width = (width / 16 * 16).clamp(16, channels.max(16));
        ChannelSlices { width, count: channels.div_ceil(width), channels }
    }

    /// First channel and channel count of slice `s`.
    fn range(&self, s: usize) -> (usize, usize) {
        let first = s * self.width;
        (first, self.width.min(self.channels - first))
    }

    /// The kernel and the bias for slice `s`: the first starts each sum, the others go on
    /// from it, and only the last adds the bias.
    fn pass<T>(&self, s: usize, mk: &MicroKernel<T>, bias: *const T, no_bias: &[T]) -> (KernelFn<T>, *const T) {
        let run = if s == 0 { mk.run } else { mk.run_acc };
        (run, if s + 1 == self.count { bias } else { no_bias.as_ptr() })
    }
}

/// Tiles ahead whose new input rows a strip down the panels asks for.
const PREFETCH_TILES_AHEAD: usize = 2;

/// For a strip of panels `step` elements apart: each tile asks for what the tile
/// [`PREFETCH_TILES_AHEAD`] on reads past the one before it. Rows not yet touched arrive as
/// demand misses otherwise, a stalled broadcast each.
fn ahead_down_panels<T>(lhs: &Lhs<T>, mr: usize, step: usize) -> Ahead {
    let bytes = step * std::mem::size_of::<T>();
    if step == 0 || bytes > PREFETCH_MAX_BYTES {
        return Ahead::NONE;
    }
    let reach = (mr - 1) * lhs.row + (lhs.taps - 1) * lhs.tap + lhs.channels;
    Ahead { start: reach + (PREFETCH_TILES_AHEAD - 1) * step, rows: 1, pitch: 0, bytes }
}

/// The input rows that the next panel reads first, `channels` wide from where this panel's
/// input starts (nothing when that is more than a few KiB): its rows arrive as demand misses
/// otherwise, one stalled broadcast per row. A strip across groups has each tile ask for its
/// group's channels, so that the panel's prefetches are spread over its tiles; other
/// panel-major strips ask for all of the chunk's channels at the panel's start.
fn next_panel_rows(layout: &TileLayout, pitch: usize, mr: usize, taps: usize, channels: usize, elem: usize) -> Ahead {
    let rows = mr * layout.row_step;
    if rows * channels * elem > PREFETCH_MAX_BYTES {
        return Ahead::NONE;
    }
    let first_new_row = (mr - 1) * layout.row_step + (taps - 1) * layout.tap_step + 1;
    Ahead { start: first_new_row * pitch, rows, pitch, bytes: channels * elem }
}

#[cfg(test)]
mod tests {
    use super::{ahead_down_panels, next_panel_rows, PREFETCH_TILES_AHEAD};
    use crate::geometry::Geometry;
    use crate::kernel::microkernel::Lhs;
    use crate::kernel::tile::{TileLayout, TILE_TARGET_BYTES};
    use crate::params::Conv1dParams;
    use std::collections::BTreeSet;

    const MR: usize = 6;

    /// Tile rows that output rows `first..first + MR` read.
    fn panel_rows(layout: &TileLayout, taps: usize, first: usize) -> BTreeSet<usize> {
        (first..first + MR).flat_map(|i| (0..taps).map(move |j| i * layout.row_step + j * layout.tap_step)).collect()
    }

    #[test]
    fn a_strip_across_groups_prefetches_the_rows_the_next_panel_reads_first() {
        let (groups, per_group) = (8, 8);
        for (kernel_size, strides, dilation) in [(3, 1, 1), (5, 1, 2), (4, 2, 1), (3, 3, 1), (2, 4, 1)] {
            let params = Conv1dParams::new().strides(strides).dilation_rate(dilation).groups(groups);
            let geo = Geometry::new([1, 2048, groups * per_group], [kernel_size, per_group, 64], None, &params).unwrap();
            let layout = TileLayout::choose(&geo, MR, groups * per_group, 4, TILE_TARGET_BYTES, 1);
            let pitch = groups * per_group;
            let ahead = next_panel_rows(&layout, pitch, MR, kernel_size, per_group, 4);
            let (first, next) = (panel_rows(&layout, kernel_size, 0), panel_rows(&layout, kernel_size, MR));
            let fresh: Vec<usize> = next.difference(&first).copied().collect();
            let asked: Vec<usize> = (0..ahead.rows).map(|r| ahead.start / pitch + r).collect();
            assert_eq!((ahead.start % pitch, ahead.pitch, ahead.bytes), (0, pitch, per_group * 4));
            assert_eq!(asked, fresh, "kernel {kernel_size}, strides {strides}, dilation {dilation}");
        }
    }

    #[test]
    fn a_strip_down_the_panels_prefetches_what_no_earlier_tile_read() {
        // (channels, taps, tap distance in rows): contiguous rows, as in a tile of whole rows.
        for (channels, taps, tap_rows) in [(64, 2, 16), (128, 3, 4), (12, 7, 1), (256, 1, 1)] {
            let lhs = Lhs { ptr: std::ptr::null::<f32>(), row: channels, tap: tap_rows * channels, taps, channels, weights_tap: 0 };
            let step = MR * lhs.row;
            let ahead = ahead_down_panels(&lhs, MR, step);
            let read = |tile: usize| -> BTreeSet<usize> {
                (0..MR)
                    .flat_map(|i| (0..taps).flat_map(move |j| (0..channels).map(move |c| tile * step + i * lhs.row + j * lhs.tap + c)))
                    .collect()
            };
            // Tile `s` of a strip that began long before it.
            let s = 2 * taps * tap_rows + 4;
            let earlier: BTreeSet<usize> = (0..s + PREFETCH_TILES_AHEAD).flat_map(read).collect();
            let fresh: Vec<usize> = read(s + PREFETCH_TILES_AHEAD).difference(&earlier).copied().collect();
            let asked: Vec<usize> = (0..ahead.bytes / 4).map(|e| s * step + ahead.start + e).collect();
            assert_eq!(ahead.rows, 1);
            assert_eq!(asked, fresh, "channels {channels}, taps {taps} {tap_rows} rows apart");
        }
    }
}
