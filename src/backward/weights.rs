//! `dkernel` for the general path: for each group a `(taps * Cg) x Fg` GEMM reduced over every
//! output step of every batch item. Tile rows are (tap `j`, channel `c`), reading `x` at step
//! `t*s + j*d - pad_left`; columns are filters, reading `dy` at step `t`. Work items own
//! disjoint blocks of rows and filters and each sums its part of the `(n, t)` reduction in
//! order, a chunk of steps at a time, keeping its partial sums between chunks.

use super::prefetch::LinePrefetch;
use super::tile::{TileKernel, Walk, MAX_MR, MAX_NR};
use super::{add_parts_in_order, workers, Rows};
use crate::conv::try_zeroed;
use crate::error::Result;
use crate::geometry::Geometry;
use crate::kernel::{for_each_item, Element, SharedOut};
use std::array;

/// Output steps per tile call: one block of `dy` over a chunk (`STEP_CHUNK * NR`) stays in L1.
const STEP_CHUNK: usize = 128;
/// Elements of the packed panels of `x` per work item, at most: every item reads (and packs)
/// `dy` once, so items are large; their panels still fit in L2.
const MAX_PACKED: usize = 64 * STEP_CHUNK * MAX_MR;
/// Filter blocks per work item, at most: every item reads (and packs) its rows of `x` once.
/// Bounds the packing buffer of `dy`.
const MAX_ITEM_BLOCKS: usize = 32;
/// Elements of the largest window of `x` a worker copies for chunks that read padding.
const MAX_WINDOW: usize = 1 << 18;

/// Output steps of the whole batch per part of the reduction, at least.
const MIN_PART_STEPS: usize = 2048;
/// Parts of the reduction, at most.
const MAX_PARTS: usize = 16;
/// Largest result whose reduction is split: larger ones are split by rows and filters,
/// where partial sums would only add traffic.
const MAX_SPLIT_SUMS: usize = 1 << 16;

/// How `x` reaches the tiles.
#[derive(Clone, Copy, PartialEq, Eq)]
enum XLayout {
    /// Read where it lies (or from a zero-framed window). Tile rows are `(j, c)` in order,
    /// `j * Cg + c`, so a tile may straddle two taps.
    InPlace,
    /// Copied into panels `[step][MR]` of `MR` channels each. Every tap's channels are padded
    /// to whole tiles, so a tile is `MR` channels of one tap; tiles run tap by tap within a
    /// channel tile. With `shared`, a unit of work is one channel tile with all its taps: its
    /// panel holds the input steps a chunk reads, and every tap reads it at its own offset
    /// (`j * d` rows on). Otherwise a unit is one tile with a panel of its own, one row per
    /// output step: taps far apart would leave most of a shared panel unread.
    Panels { shared: bool },
}

/// How one call splits its work into items, and how it reads its operands.
struct Plan {
    /// The `(n, t)` reduction is cut into this many parts of `part_len` steps, summed
    /// separately and then added up in order. The cut depends on the shapes alone, so the
    /// result is the same for any number of threads; it lets a small result (few taps,
    /// channels and filters) over a long input read `x` and `dy` once, instead of once per
    /// item.
    parts: usize,
    part_len: usize,
    /// Input steps one chunk of output steps reads, at most.
    span: usize,
    x_layout: XLayout,
    /// Elements of the panels of one unit of work (none when `x` is read in place).
    unit_panels: usize,
    /// Row tiles per unit of work: one, or every tap of a channel tile when `x` is in panels.
    tiles_per_unit: usize,
    units: usize,
    units_per_item: usize,
    unit_chunks: usize,
    blocks_per_item: usize,
    block_chunks: usize,
    /// Copy `dy` as `[block][step][NR]`: pays when its rows are wide and many tiles reuse it;
    /// needed when the last block of a group is partial (a direct read would run past `dy`).
    pack_dy: bool,
}

impl Plan {
    fn new<T>(geo: &Geometry, sums_len: usize, (mr, nr): (usize, usize), blocks: usize, workers: usize) -> Self {
        let size = std::mem::size_of::<T>();
        let (k, cg) = (geo.kernel_size, geo.in_per_group());
        let reduction = geo.batch * geo.out_steps;
        let parts = if sums_len > MAX_SPLIT_SUMS { 1 } else { (reduction / MIN_PART_STEPS).clamp(1, MAX_PARTS) };
        let blocks_per_item = blocks.min(MAX_ITEM_BLOCKS);
        let block_chunks = blocks.div_ceil(blocks_per_item);
        // Input steps one chunk of output steps reads.
        let span = (STEP_CHUNK - 1).saturating_mul(geo.strides).saturating_add(geo.halo() + 1);
        // Panels pay when rows of x are wide, so that a tile walking down its few columns
        // would touch a new cache line at every step, and when many filter blocks reuse the
        // copy. They also bound the scratch where a window of x would be large.
        let pack_x = (geo.in_channels * size >= 512 && blocks_per_item * nr * size >= 256)
            || span.saturating_mul(geo.in_channels) > MAX_WINDOW;
        // A shared panel is copied once for all taps: when it has no more rows than per-tap
        // panels together, and fits the packing bound.
        let shared = span <= k.saturating_mul(STEP_CHUNK) && span * mr <= MAX_PACKED;
        let (x_layout, tiles_per_unit, units, unit_panels) = if pack_x && shared {
            (XLayout::Panels { shared }, k, cg.div_ceil(mr), span * mr)
        } else if pack_x {
            (XLayout::Panels { shared }, 1, k * cg.div_ceil(mr), STEP_CHUNK * mr)
        } else {
            (XLayout::InPlace, 1, (k * cg).div_ceil(mr), 0)
        };
        // Few items, each streaming x and dy once: the results are small and the data long.
        // The split only moves work between threads; it never changes a result.
        let wanted = if workers > 1 { 2 * workers } else { 1 };
        let mut units_per_item = units.div_ceil(wanted.div_ceil(parts * block_chunks).max(1)).max(1);
        if pack_x {
            units_per_item = units_per_item.min((MAX_PACKED / unit_panels).max(1));
        }
        let partial = !geo.filters_per_group().is_multiple_of(nr);
        let pack_dy = partial || (geo.filters * size >= 512 && units_per_item * tiles_per_unit >= 4);
        Plan {
            parts,
            part_len: reduction.div_ceil(parts),
            span,
            x_layout,
            unit_panels,
            tiles_per_unit,
            units,
            units_per_item,
            unit_chunks: units.div_ceil(units_per_item),
            blocks_per_item,
            block_chunks,
            pack_dy,
        }
    }
}

/// Writes `dkernel` (Keras layout) from `x` and `dy`.
pub(super) fn kernel_gradient<T: Element>(
    geo: &Geometry,
    x: &Rows<'_, T>,
    dy: &Rows<'_, T>,
    tk: TileKernel<T>,
    parallel: bool,
    dkernel: &mut [T],
) -> Result<()> {
    let (mr, nr) = (tk.mr, tk.nr);
    let (k, cg, fg, groups) = (geo.kernel_size, geo.in_per_group(), geo.filters_per_group(), geo.groups);
    let (s, d, pad) = (geo.strides, geo.dilation_rate, geo.pad_left as isize);
    let channels = geo.in_channels;
    let width = fg.next_multiple_of(nr);
    let blocks = width / nr;
    let rows = k * cg;
    let sums_len = groups * rows * width;
    let plan = Plan::new::<T>(geo, sums_len, (mr, nr), blocks, workers(parallel));
    // The (tap, channel) of row r of tile ti, if the row is not padding.
    let row_of = |ti: usize, r: usize| -> Option<(usize, usize)> {
        match plan.x_layout {
            XLayout::InPlace => {
                let q = ti * mr + r;
                (q < rows).then(|| (q / cg, q % cg))
            }
            XLayout::Panels { .. } => {
                let (j, c) = (ti % k, (ti / k) * mr + r);
                (c < cg).then_some((j, c))
            }
        }
    };
    // Sums as [part][group][tap][channel][filter padded to NR]; lanes past the group's
    // filters are dropped at the end.
    let mut sums = try_zeroed::<T>(plan.parts * sums_len)?;
    let items = plan.parts * groups * plan.unit_chunks * plan.block_chunks;
    let sums_ptr = SharedOut(sums.as_mut_ptr());
    // Per worker: a spare row for tile rows past the end, then packed dy, then the panels of
    // x or a zero-padded window of x for chunks that read padding.
    let dy_len = if plan.pack_dy { plan.blocks_per_item * STEP_CHUNK * nr } else { 0 };
    let unit_panels = plan.unit_panels;
    let x_len = match plan.x_layout {
        XLayout::InPlace => plan.span * channels,
        XLayout::Panels { .. } => plan.units_per_item * unit_panels,
    };
    // The input steps lo..hi that the item's taps read over `count` output steps from t0
    // (reaching past the input where it is padded).
    let band = |t0: usize, count: usize, (tap_lo, tap_hi): (usize, usize)| {
        let base = (t0 * s) as isize - pad;
        (base + (tap_lo * d) as isize, base + ((count - 1) * s + tap_hi * d) as isize + 1)
    };
    for_each_item::<T, _>(items, MAX_NR + dy_len + x_len, parallel, |item, scratch| {
        let bc = item % plan.block_chunks;
        let uc = (item / plan.block_chunks) % plan.unit_chunks;
        let g = (item / (plan.block_chunks * plan.unit_chunks)) % groups;
        let part = item / (plan.block_chunks * plan.unit_chunks * groups);
        let (p0, p1) = (part * plan.part_len, ((part + 1) * plan.part_len).min(geo.batch * geo.out_steps));
        let item_blocks = bc * plan.blocks_per_item..((bc + 1) * plan.blocks_per_item).min(blocks);
        let item_units = uc * plan.units_per_item..((uc + 1) * plan.units_per_item).min(plan.units);
        let item_tiles = item_units.start * plan.tiles_per_unit..item_units.end * plan.tiles_per_unit;
        let (spare, rest) = scratch.split_at_mut(MAX_NR);
        let (packed_dy, x_buf) = rest.split_at_mut(dy_len);
        let spare = spare.as_mut_ptr();
        // Each row of the item's tiles: its offset from a row of x, its row of sums.
        let item_rows: Vec<Option<(usize, usize)>> = item_tiles
            .clone()
            .flat_map(|ti| (0..mr).map(move |r| (ti, r)))
            .map(|(ti, r)| {
                row_of(ti, r).map(|(j, c)| (j * d * channels + g * cg + c, part * sums_len + ((g * k + j) * cg + c) * width))
            })
            .collect();
        // The taps and channels the item's rows cover (inclusive).
        let covered = item_tiles.clone().flat_map(|ti| (0..mr).filter_map(move |r| row_of(ti, r))).fold(
            None,
            |range: Option<(usize, usize, usize, usize)>, (j, c)| {
                Some(range.map_or((j, j, c, c), |(j0, j1, c0, c1)| (j0.min(j), j1.max(j), c0.min(c), c1.max(c))))
            },
        );
        let Some((tap_lo, tap_hi, c_lo, c_hi)) = covered else { return };
        // The item's panels as (first input step from the chunk's base, first channel,
        // channels, offset in `x_buf`), and where each tile's rows read in `x_buf` (or, in
        // place, from the base of the chunk's A; rows past the last (tap, channel) repeat
        // row 0's read and land in `spare`).
        let mut panels: Vec<(usize, usize, usize, usize)> = Vec::new();
        let tile_offsets: Vec<[isize; MAX_MR]> = match plan.x_layout {
            XLayout::InPlace => item_rows
                .chunks(mr)
                .map(|tile_rows| {
                    let first = tile_rows[0].map_or(0, |(at, _)| at);
                    array::from_fn(|r| tile_rows.get(r).copied().flatten().map_or(first, |(at, _)| at) as isize)
                })
                .collect(),
            XLayout::Panels { shared } => item_tiles
                .clone()
                .map(|ti| {
                    let (ct, j) = (ti / k, ti % k);
                    let (c0, len) = (ct * mr, mr.min(cg - ct * mr));
                    let at = if shared {
                        let at = (ct - item_units.start) * unit_panels;
                        if j == 0 {
                            panels.push((0, c0, len, at));
                        }
                        at + j * d * mr
                    } else {
                        let at = (ti - item_tiles.start) * unit_panels;
                        panels.push((j * d, c0, len, at));
                        at
                    };
                    array::from_fn(|r| (at + r) as isize)
                })
                .collect(),
        };
        if plan.x_layout != XLayout::InPlace {
            x_buf.fill(T::zero()); // lanes past a panel's channels stay zero
        }
        // The part's steps, batch item by batch item, in chunks of at most STEP_CHUNK.
        let chunks = (p0 / geo.out_steps..p1.div_ceil(geo.out_steps)).flat_map(|n| {
            let t_begin = p0.saturating_sub(n * geo.out_steps);
            let t_end = (p1 - n * geo.out_steps).min(geo.out_steps);
            (t_begin..t_end).step_by(STEP_CHUNK).map(move |t0| (n, t0, STEP_CHUNK.min(t_end - t0)))
        });
        let mut chunks = chunks.peekable();
        while let Some((n, t0, count)) = chunks.next() {
            // Input step of row (j = 0, c = 0) at output step t0.
            let base = (t0 * s) as isize - pad;
            if plan.pack_dy {
                for (bi, fb) in item_blocks.clone().enumerate() {
                    let cols = nr.min(fg - fb * nr);
                    for v in 0..count {
                        let from = &dy.data[dy.offset(n, t0 + v) + g * fg + fb * nr..][..cols];
                        let to = &mut packed_dy[(bi * STEP_CHUNK + v) * nr..][..nr];
                        copy_small(&mut to[..cols], from);
                        to[cols..].fill(T::zero());
                    }
                }
            }
            // Where tile rows read x: the array itself, or a copy in `x_buf`.
            let (a, a_base, a_step): (*const T, isize, usize) = match plan.x_layout {
                XLayout::Panels { shared } => {
                    // Panel rows are input steps (shared) or output steps; row by row, the
                    // reads run along rows of x.
                    let (panel_rows, row_step) = if shared { ((count - 1) * s + geo.halo() + 1, 1) } else { (count, s) };
                    for row in 0..panel_rows {
                        for &(first, c0, len, at) in &panels {
                            let step = base + (first + row * row_step) as isize;
                            let to = &mut x_buf[at + row * mr..][..len];
                            if step >= 0 && (step as usize) < geo.steps {
                                copy_small(to, &x.data[x.offset(n, step as usize) + g * cg + c0..][..len]);
                            } else {
                                to.fill(T::zero());
                            }
                        }
                    }
                    (x_buf.as_ptr(), 0, if shared { s * mr } else { mr })
                }
                XLayout::InPlace => {
                    let (lo, hi) = band(t0, count, (tap_lo, tap_hi));
                    if lo >= 0 && hi <= geo.steps as isize {
                        (x.data.as_ptr(), x.offset(n, 0) as isize + base * channels as isize, s * channels)
                    } else {
                        // The chunk reads padding: copy its window of x with zeros around.
                        x.window(n, lo, hi, 0..channels, x_buf);
                        (x_buf.as_ptr(), (base - lo) * channels as isize, s * channels)
                    }
                }
            };
            // The next chunk's rows of x come in while this one computes, a few lines per tile:
            // panels read a narrow band of long rows, which the hardware does not foresee.
            let mut ahead = LinePrefetch::default();
            if let (XLayout::Panels { .. }, Some(&(n, t0, count))) = (plan.x_layout, chunks.peek()) {
                let (lo, hi) = band(t0, count, (tap_lo, tap_hi));
                let (lo, hi) = (lo.max(0) as usize, hi.clamp(0, geo.steps as isize) as usize);
                if lo < hi {
                    let calls = item_blocks.len() * item_tiles.len();
                    ahead = LinePrefetch::new(&x.data[x.offset(n, lo) + g * cg + c_lo..], hi - lo, channels, c_hi + 1 - c_lo, calls);
                }
            }
            // Both operands packed row after row: the walk needs no offsets.
            let packed = plan.pack_dy && a_step == mr && plan.x_layout != XLayout::InPlace;
            // One block of dy stays in L1 while the row tiles stream past it.
            for (bi, fb) in item_blocks.clone().enumerate() {
                let (b, b_off, b_step) = if plan.pack_dy {
                    (packed_dy.as_ptr(), bi * STEP_CHUNK * nr, nr)
                } else {
                    (dy.data.as_ptr(), dy.offset(n, t0) + g * fg + fb * nr, geo.filters)
                };
                let segment = [(a_base, b_off as isize)];
                let walk = Walk { segments: &segment, inner: count, a_step: a_step as isize, b_step: b_step as isize };
                for (tile_rows, offsets) in item_rows.chunks(mr).zip(&tile_offsets) {
                    let c_rows: [*mut T; MAX_MR] = array::from_fn(|r| match tile_rows.get(r).copied().flatten() {
                        Some((_, at)) => sums_ptr.get().wrapping_add(at + fb * nr),
                        None => spare,
                    });
                    // SAFETY: A reads `count` steps of this tile's rows: its panel in `x_buf`
                    // (a shared panel's rows j*d + v*s, v < count, are below `span`; a tile's
                    // own has STEP_CHUNK rows), or x at steps lo..hi of batch item n, checked
                    // above to lie inside x or else copied into `x_buf` (sized for the longest
                    // window). B reads `count` rows of NR: packed in this worker's scratch, or
                    // dy rows t0.. of batch item n at filters g*fg + fb*nr + NR <= filters (the
                    // group's blocks are full when dy is not packed). Writes: rows of `sums`
                    // of this item's tiles and block (disjoint between items), or `spare`
                    // (MAX_NR >= nr).
                    match tk.run_packed {
                        // SAFETY: as above, with A this tile's panel rows one after another
                        // (a_step == mr) and B packed (b_step == nr).
                        Some(run_packed) if packed => unsafe {
                            run_packed(count, a.wrapping_offset(a_base + offsets[0]), b.add(b_off), &c_rows)
                        },
                        _ => unsafe { (tk.run)(&walk, a, offsets, b, &c_rows) },
                    }
                    ahead.issue();
                }
            }
        }
    });
    add_parts_in_order(&mut sums, sums_len);
    let first = &sums[..sums_len];
    for j in 0..k {
        for c in 0..cg {
            for g in 0..groups {
                let from = &first[((g * k + j) * cg + c) * width..][..fg];
                dkernel[(j * cg + c) * geo.filters + g * fg..][..fg].copy_from_slice(from);
            }
        }
    }
    Ok(())
}

/// `to.copy_from_slice(from)` for the few lengths of a tile's side, as fixed-size moves: a
/// call to `memcpy` per row of a few elements would cost more than the copy.
#[inline]
fn copy_small<T: Copy>(to: &mut [T], from: &[T]) {
    fn fixed<T: Copy, const N: usize>(to: &mut [T], from: &[T]) {
        if let (Ok(to), Ok(from)) = (<&mut [T; N]>::try_from(to), <&[T; N]>::try_from(from)) {
            *to = *from;
        }
    }
    match (to.len(), from.len()) {
        (4, 4) => fixed::<T, 4>(to, from),
        (6, 6) => fixed::<T, 6>(to, from),
        (8, 8) => fixed::<T, 8>(to, from),
        (16, 16) => fixed::<T, 16>(to, from),
        _ => to.copy_from_slice(from),
    }
}
