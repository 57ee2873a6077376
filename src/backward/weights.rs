//! `dkernel` for the general path: for each group a `(taps * Cg) x Fg` GEMM reduced over every
//! output step of every batch item. Tile rows are (tap `j`, channel `c`), reading `x` at step
//! `t*s + j*d - pad_left`; columns are filters, reading `dy` at step `t`. Work items own
//! disjoint blocks of rows and filters and each sums its part of the `(n, t)` reduction in
//! order, a chunk of steps at a time, keeping its partial sums between chunks.

use super::tile::{TileKernel, Walk, MAX_MR, MAX_NR};
use super::{add_parts_in_order, workers, Rows};
use crate::conv::try_zeroed;
use crate::error::Result;
use crate::geometry::Geometry;
use crate::kernel::{for_each_item, Element, SharedOut};
use std::array;

/// Output steps per tile call: one block of `dy` over a chunk (`STEP_CHUNK * NR`) stays in L1.
const STEP_CHUNK: usize = 128;
/// Row tiles per work item when `x` is packed: every item reads (and packs) `dy` once, so
/// items are large; their packed panels still fit in L2. Bounds the packing buffer.
const MAX_ITEM_TILES: usize = 64;
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

/// How one call splits its work into items, and which operands it packs.
struct Plan {
    /// The `(n, t)` reduction is cut into this many parts of `part_len` steps, summed
    /// separately and then added up in order. The cut depends on the shapes alone, so the
    /// result is the same for any number of threads; it lets a small result (few taps,
    /// channels and filters) over a long input read `x` and `dy` once, instead of once per
    /// item.
    parts: usize,
    part_len: usize,
    tiles_per_item: usize,
    tile_chunks: usize,
    blocks_per_item: usize,
    block_chunks: usize,
    /// Copy each chunk of steps of `x` as panels `[tile][step][MR]`: pays when rows of `x` are
    /// wide, so that a tile walking down its few columns would touch a new cache line at every
    /// step, and when many filter blocks reuse the copy.
    pack_x: bool,
    /// Copy `dy` as `[block][step][NR]`: pays when its rows are wide and many tiles reuse it;
    /// needed when the last block of a group is partial (a direct read would run past `dy`).
    pack_dy: bool,
}

impl Plan {
    fn new<T>(geo: &Geometry, sums_len: usize, tiles: usize, blocks: usize, nr: usize, workers: usize) -> Self {
        let size = std::mem::size_of::<T>();
        let reduction = geo.batch * geo.out_steps;
        let parts = if sums_len > MAX_SPLIT_SUMS { 1 } else { (reduction / MIN_PART_STEPS).clamp(1, MAX_PARTS) };
        let blocks_per_item = blocks.min(MAX_ITEM_BLOCKS);
        let block_chunks = blocks.div_ceil(blocks_per_item);
        // Packing also bounds the scratch where a window of x (chunk plus kernel span) would
        // be large.
        let window = ((STEP_CHUNK - 1) * geo.strides + geo.halo() + 1).saturating_mul(geo.in_channels);
        let pack_x = (geo.in_channels * size >= 512 && blocks_per_item * nr * size >= 256) || window > MAX_WINDOW;
        // Few items, each streaming x and dy once: the results are small and the data long.
        // The split only moves work between threads; it never changes a result.
        let wanted = if workers > 1 { 2 * workers } else { 1 };
        let mut tiles_per_item = tiles.div_ceil(wanted.div_ceil(parts * block_chunks).max(1)).max(1);
        if pack_x {
            tiles_per_item = tiles_per_item.min(MAX_ITEM_TILES);
        }
        let partial = geo.filters_per_group() % nr != 0;
        let pack_dy = partial || (geo.filters * size >= 512 && tiles_per_item >= 4);
        Plan {
            parts,
            part_len: reduction.div_ceil(parts),
            tiles_per_item,
            tile_chunks: tiles.div_ceil(tiles_per_item),
            blocks_per_item,
            block_chunks,
            pack_x,
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
    let tiles = rows.div_ceil(mr);
    let sums_len = groups * rows * width;
    let plan = Plan::new::<T>(geo, sums_len, tiles, blocks, nr, workers(parallel));
    // Sums as [part][group][tap][channel][filter padded to NR]; lanes past the group's
    // filters are dropped at the end.
    let mut sums = try_zeroed::<T>(plan.parts * sums_len)?;
    let items = plan.parts * groups * plan.tile_chunks * plan.block_chunks;
    let sums_ptr = SharedOut(sums.as_mut_ptr());
    // Per worker: a spare row for tile rows past the end, then packed dy, then packed x or
    // a zero-padded window of x for chunks that read padding.
    let dy_len = if plan.pack_dy { plan.blocks_per_item * STEP_CHUNK * nr } else { 0 };
    let x_len = if plan.pack_x {
        plan.tiles_per_item * mr * STEP_CHUNK
    } else {
        ((STEP_CHUNK - 1) * s + geo.halo() + 1) * channels
    };
    for_each_item::<T, _>(items, MAX_NR + dy_len + x_len, parallel, |item, scratch| {
        let bc = item % plan.block_chunks;
        let tc = (item / plan.block_chunks) % plan.tile_chunks;
        let g = (item / (plan.block_chunks * plan.tile_chunks)) % groups;
        let part = item / (plan.block_chunks * plan.tile_chunks * groups);
        let (p0, p1) = (part * plan.part_len, ((part + 1) * plan.part_len).min(geo.batch * geo.out_steps));
        let item_blocks = bc * plan.blocks_per_item..((bc + 1) * plan.blocks_per_item).min(blocks);
        let item_tiles = tc * plan.tiles_per_item..((tc + 1) * plan.tiles_per_item).min(tiles);
        let (spare, rest) = scratch.split_at_mut(MAX_NR);
        let (packed_dy, x_buf) = rest.split_at_mut(dy_len);
        let spare = spare.as_mut_ptr();
        // Each row (tap j, channel c) of the item: its offset from a row of x, its row of sums.
        let item_rows: Vec<Option<(usize, usize)>> = (item_tiles.start * mr..item_tiles.end * mr)
            .map(|q| {
                (q < rows).then(|| {
                    let (j, c) = (q / cg, q % cg);
                    (j * d * channels + g * cg + c, part * sums_len + ((g * k + j) * cg + c) * width)
                })
            })
            .collect();
        // Runs of rows that sit side by side in x (one tap, consecutive channels) within one
        // tile, as (tap, first channel, length, offset of the first row in the packed panels):
        // the unit of packing, which then needs no division per element.
        let mut pieces: Vec<(usize, usize, usize, usize)> = Vec::new();
        for q in item_tiles.start * mr..(item_tiles.end * mr).min(rows) {
            let (j, c) = (q / cg, q % cg);
            let local = q - item_tiles.start * mr;
            match pieces.last_mut() {
                Some((j0, c0, len, _)) if *j0 == j && *c0 + *len == c && local % mr != 0 => *len += 1,
                _ => pieces.push((j, c, 1, (local / mr) * STEP_CHUNK * mr + local % mr)),
            }
        }
        let (tap_lo, tap_hi) = match (pieces.first(), pieces.last()) {
            (Some(first), Some(last)) => (first.0, last.0),
            _ => return,
        };
        if plan.pack_x {
            x_buf.fill(T::zero()); // rows past the last (tap, channel) stay zero
        }
        // The part's steps, batch item by batch item, in chunks of at most STEP_CHUNK.
        let chunks = (p0 / geo.out_steps..p1.div_ceil(geo.out_steps)).flat_map(|n| {
            let t_begin = p0.saturating_sub(n * geo.out_steps);
            let t_end = (p1 - n * geo.out_steps).min(geo.out_steps);
            (t_begin..t_end).step_by(STEP_CHUNK).map(move |t0| (n, t0, STEP_CHUNK.min(t_end - t0)))
        });
        // Where each tile's rows read, from the base of the chunk's A: rows past the last
        // (tap, channel) repeat row 0's read and land in `spare`.
        let tile_offsets: Vec<[isize; MAX_MR]> = item_rows
            .chunks(mr)
            .enumerate()
            .map(|(ti, tile_rows)| {
                if plan.pack_x {
                    array::from_fn(|r| (ti * STEP_CHUNK * mr + r.min(mr - 1)) as isize)
                } else {
                    let first = tile_rows[0].map_or(0, |(at, _)| at);
                    array::from_fn(|r| tile_rows.get(r).copied().flatten().map_or(first, |(at, _)| at) as isize)
                }
            })
            .collect();
        for (n, t0, count) in chunks {
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
            let (a, a_base, a_step): (*const T, isize, usize) = if plan.pack_x {
                // Step by step: the reads run along rows of x.
                for v in 0..count {
                    for &(j, c0, len, at) in &pieces {
                        let step = base + (v * s + j * d) as isize;
                        let to = &mut x_buf[at + v * mr..][..len];
                        if step >= 0 && (step as usize) < geo.steps {
                            copy_small(to, &x.data[x.offset(n, step as usize) + g * cg + c0..][..len]);
                        } else {
                            to.fill(T::zero());
                        }
                    }
                }
                (x_buf.as_ptr(), 0, mr)
            } else {
                let lo = base + (tap_lo * d) as isize;
                let hi = base + ((count - 1) * s + tap_hi * d) as isize + 1;
                if lo >= 0 && hi <= geo.steps as isize {
                    (x.data.as_ptr(), x.offset(n, 0) as isize + base * channels as isize, s * channels)
                } else {
                    // The chunk reads padding: copy its window of x with zeros around.
                    x.window(n, lo, hi, 0..channels, x_buf);
                    (x_buf.as_ptr(), (base - lo) * channels as isize, s * channels)
                }
            };
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
                    // (STEP_CHUNK * mr per tile), or x at steps lo..hi of batch item n, checked
                    // above to lie inside x or else copied into `x_buf` (sized for the longest
                    // window). B reads `count` rows of NR: packed in this worker's scratch, or
                    // dy rows t0.. of batch item n at filters g*fg + fb*nr + NR <= filters (the
                    // group's blocks are full when dy is not packed). Writes: rows of `sums`
                    // of this item's tiles and block (disjoint between items), or `spare`
                    // (MAX_NR >= nr).
                    unsafe { (tk.run)(&walk, a, offsets, b, &c_rows) };
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
