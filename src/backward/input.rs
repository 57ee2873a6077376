//! `dx` for the general path. Input steps `i = r + s*m` of one residue class `r` (mod the
//! stride `s`) are reached by the taps with `(r + pad_left - j*d) % s == 0`, and tap `j` reads
//! output step `(r + pad_left - j*d) / s + m`: consecutive `m`, consecutive rows of `dy`.
//! So each class is a stride-1 correlation of `dy` with its taps, reduced over
//! (tap, filter). Tiles are `MR` such steps by `NR` channels, against the kernel packed
//! `[group][channel block][tap][filter][NR]`; groups with few channels use dot products over
//! filters instead, which fill the vector lanes where a channel tile would not.
//!
//! Tiles whose rows of `dy` run past either end read a zero-padded copy of that window.

use super::lanes::dot4;
use super::tile::{TileKernel, Walk, MAX_MR, MAX_NR};
use super::{workers, Rows};
use crate::conv::try_zeroed;
use crate::error::Result;
use crate::geometry::Geometry;
use crate::kernel::{for_each_item, Element, SharedOut};
use crate::params::DataFormat;
use ndarray::ArrayView3;
use std::array;

/// Input steps of one residue class per work item, at most.
const MAX_ITEM_STEPS: usize = 256;
/// Input steps per dot-product block.
const DOT_ROWS: usize = 4;

/// The taps reaching residue class `r`, with the output step each reads for `m = 0`.
fn phase_taps(geo: &Geometry, r: usize) -> Vec<(usize, isize)> {
    let s = geo.strides as isize;
    (0..geo.kernel_size)
        .filter_map(|j| {
            let num = (r + geo.pad_left) as isize - (j * geo.dilation_rate) as isize;
            (num % s == 0).then_some((j, num / s))
        })
        .collect()
}

/// One run of work: steps `r + s*m` for `m` in `m0..m1`, for one batch item and group.
#[derive(Clone, Copy)]
struct Run {
    r: usize,
    m0: usize,
    m1: usize,
}

/// Splits every residue class into runs of whole blocks of `rows` steps. Long runs reuse the
/// packed weights of a channel block across many tiles; runs are halved while there are too
/// few items to keep `workers` threads busy. The split never changes a result.
fn runs(geo: &Geometry, phases: &[Vec<(usize, isize)>], rows: usize, workers: usize) -> Vec<Run> {
    let mut per_run = MAX_ITEM_STEPS.next_multiple_of(rows);
    loop {
        let mut runs = Vec::new();
        for r in 0..phases.len() {
            let steps = (geo.steps - r).div_ceil(geo.strides);
            for m0 in (0..steps).step_by(per_run) {
                runs.push(Run { r, m0, m1: (m0 + per_run).min(steps) });
            }
        }
        if per_run <= rows || geo.batch * geo.groups * runs.len() >= 4 * workers {
            return runs;
        }
        per_run = (per_run / 2).next_multiple_of(rows);
    }
}

/// Index of `dx[n, i, c]` in the caller's layout.
#[inline]
pub(super) fn dx_index(geo: &Geometry, n: usize, i: usize, c: usize) -> usize {
    match geo.data_format {
        DataFormat::ChannelsLast => (n * geo.steps + i) * geo.in_channels + c,
        DataFormat::ChannelsFirst => (n * geo.in_channels + c) * geo.steps + i,
    }
}

/// The taps of a block of `rows` steps from `m0` that reach any output step, as
/// `(tap, first output step read)`, and the span `lo..hi` of output steps they read.
fn block_taps(
    taps: &[(usize, isize)],
    m0: usize,
    rows: usize,
    out_steps: usize,
    into: &mut Vec<(usize, isize)>,
) -> (isize, isize) {
    into.clear();
    let (mut lo, mut hi) = (isize::MAX, isize::MIN);
    for &(j, t0) in taps {
        let t = t0 + m0 as isize;
        if t + rows as isize <= 0 || t >= out_steps as isize {
            continue; // reads padding only
        }
        lo = lo.min(t);
        hi = hi.max(t + rows as isize);
        into.push((j, t));
    }
    (lo, hi)
}

/// Output steps the taps of one block can span: their first steps lie at most `halo / s`
/// apart, and every tap that counts starts inside `1 - rows..out_steps`.
fn window_steps(geo: &Geometry, rows: usize) -> usize {
    (geo.halo() / geo.strides + 1).min(geo.out_steps + rows) + rows
}

/// Writes `dx` (zeroed, in the caller's layout) from `dy`.
pub(super) fn input_gradient<T: Element>(
    geo: &Geometry,
    dy: &Rows<'_, T>,
    kernel: ArrayView3<T>,
    tk: TileKernel<T>,
    fused: bool,
    parallel: bool,
    dx: &mut [T],
) -> Result<()> {
    let phases: Vec<_> = (0..geo.strides.min(geo.steps)).map(|r| phase_taps(geo, r)).collect();
    if prefer_dot::<T>(geo, tk.nr) {
        dot_path(geo, dy, kernel, &phases, fused, parallel, dx)
    } else {
        tiled_path(geo, dy, kernel, &phases, tk, parallel, dx)
    }
}

/// True when dot products over filters waste fewer lanes than tiles over channels.
pub(super) fn prefer_dot<T>(geo: &Geometry, nr: usize) -> bool {
    let (cg, fg) = (geo.in_per_group(), geo.filters_per_group());
    let lanes = if std::mem::size_of::<T>() <= 4 { 16 } else { 8 };
    // Fraction of lanes doing useful work; dots also pay a horizontal sum and more loads.
    let tile = cg as f64 / cg.next_multiple_of(nr) as f64;
    let dot = 0.6 * fg as f64 / fg.next_multiple_of(lanes) as f64;
    dot > tile
}

/// `dx` as `MR x NR` tiles of (input steps, channels) reduced over (tap, filter).
fn tiled_path<T: Element>(
    geo: &Geometry,
    dy: &Rows<'_, T>,
    kernel: ArrayView3<T>,
    phases: &[Vec<(usize, isize)>],
    tk: TileKernel<T>,
    parallel: bool,
    dx: &mut [T],
) -> Result<()> {
    let (mr, nr) = (tk.mr, tk.nr);
    let (k, cg, fg, groups) = (geo.kernel_size, geo.in_per_group(), geo.filters_per_group(), geo.groups);
    let blocks = cg.div_ceil(nr);
    // Kernel as [group][channel block][tap][filter][NR], zero past the group's channels.
    let block_len = k * fg * nr;
    let mut packed = try_zeroed::<T>(groups * blocks * block_len)?;
    for g in 0..groups {
        for cb in 0..blocks {
            let block = &mut packed[(g * blocks + cb) * block_len..][..block_len];
            for j in 0..k {
                for o in 0..fg {
                    for l in 0..nr.min(cg - cb * nr) {
                        block[(j * fg + o) * nr + l] = kernel[[j, cb * nr + l, g * fg + o]];
                    }
                }
            }
        }
    }
    let runs = runs(geo, phases, mr, workers(parallel));
    let items = geo.batch * groups * runs.len();
    let out = SharedOut(dx.as_mut_ptr());
    let full_rows: [isize; MAX_MR] = array::from_fn(|r| (r * geo.filters) as isize);
    let window_rows: [isize; MAX_MR] = array::from_fn(|r| (r * fg) as isize);
    let window_len = window_steps(geo, mr) * fg;
    for_each_item::<T, _>(items, window_len, parallel, |item, window| {
        let run = runs[item % runs.len()];
        let g = (item / runs.len()) % groups;
        let n = item / (runs.len() * groups);
        // Reduction segments of every block of the run: one per tap that reaches any of its
        // steps, as (offset of its first dy row, offset of its packed weights).
        let mut taps = Vec::with_capacity(k);
        let mut segments = Vec::with_capacity(k * (run.m1 - run.m0).div_ceil(mr));
        let mut inner = Vec::new();
        let mut edges = Vec::new();
        for m0 in (run.m0..run.m1).step_by(mr) {
            let (lo, hi) = block_taps(&phases[run.r], m0, mr, geo.out_steps, &mut taps);
            let first = segments.len();
            if lo >= 0 && hi <= geo.out_steps as isize {
                for &(j, t) in &taps {
                    segments.push(((dy.offset(n, t as usize) + g * fg) as isize, (j * fg * nr) as isize));
                }
                inner.push((m0, first, segments.len()));
            } else if !taps.is_empty() {
                for &(j, t) in &taps {
                    segments.push((((t - lo) as usize * fg) as isize, (j * fg * nr) as isize));
                }
                edges.push((m0, first, segments.len(), lo, hi));
            }
            // Blocks that no tap reaches keep their zero gradient.
        }
        let write = |m0: usize, cb: usize, tile: &[T]| {
            for row in 0..mr.min(run.m1 - m0) {
                let i = run.r + geo.strides * (m0 + row);
                for l in 0..nr.min(cg - cb * nr) {
                    let index = dx_index(geo, n, i, g * cg + cb * nr + l);
                    // SAFETY: index is inside dx; input step i of batch item n, channels of
                    // group g, belongs to this work item alone.
                    unsafe { *out.get().add(index) = tile[row * nr + l] };
                }
            }
        };
        let run_tile = |a: *const T, rows: &[isize; MAX_MR], segments: &[(isize, isize)], cb: usize| {
            let mut tile = [T::zero(); MAX_MR * MAX_NR];
            let base = tile.as_mut_ptr();
            let c_rows: [*mut T; MAX_MR] = array::from_fn(|r| base.wrapping_add(r.min(mr - 1) * nr));
            let walk = Walk { segments, inner: fg, a_step: 1, b_step: nr as isize };
            let b = packed[(g * blocks + cb) * block_len..].as_ptr();
            // SAFETY: each segment starts at a row of `a` (dy, or the window) whose next mr - 1
            // rows are also inside it (the block's taps read inside dy for inner blocks, inside
            // the window for edge blocks), and reads fg filters of a row; B reads stay in the
            // (g, cb) block of `packed` (tap < k, filter < fg, NR wide); `tile` holds mr rows
            // of nr, local to this call.
            unsafe { (tk.run)(&walk, a, rows, b, &c_rows) };
            tile
        };
        // Channel block outermost, so its packed weights stay in cache across the run.
        for cb in 0..blocks {
            for &(m0, first, last) in &inner {
                let tile = run_tile(dy.data.as_ptr(), &full_rows, &segments[first..last], cb);
                write(m0, cb, &tile);
            }
        }
        for &(m0, first, last, lo, hi) in &edges {
            dy.window(n, lo, hi, g * fg..(g + 1) * fg, window);
            for cb in 0..blocks {
                let tile = run_tile(window.as_ptr(), &window_rows, &segments[first..last], cb);
                write(m0, cb, &tile);
            }
        }
    });
    Ok(())
}

/// `dx` as dot products over (tap, filter), `DOT_ROWS` input steps at a time.
fn dot_path<T: Element>(
    geo: &Geometry,
    dy: &Rows<'_, T>,
    kernel: ArrayView3<T>,
    phases: &[Vec<(usize, isize)>],
    fused: bool,
    parallel: bool,
    dx: &mut [T],
) -> Result<()> {
    let (k, cg, fg, groups) = (geo.kernel_size, geo.in_per_group(), geo.filters_per_group(), geo.groups);
    // Kernel as [group][channel][tap][filter]: each dot reads filters contiguously.
    let mut packed = try_zeroed::<T>(groups * cg * k * fg)?;
    for g in 0..groups {
        for c in 0..cg {
            for j in 0..k {
                for o in 0..fg {
                    packed[((g * cg + c) * k + j) * fg + o] = kernel[[j, c, g * fg + o]];
                }
            }
        }
    }
    let runs = runs(geo, phases, DOT_ROWS, workers(parallel));
    let items = geo.batch * groups * runs.len();
    let out = SharedOut(dx.as_mut_ptr());
    let window_len = window_steps(geo, DOT_ROWS) * fg;
    for_each_item::<T, _>(items, window_len, parallel, |item, window| {
        let run = runs[item % runs.len()];
        let g = (item / runs.len()) % groups;
        let n = item / (runs.len() * groups);
        let mut taps = Vec::with_capacity(k);
        let mut segments = Vec::with_capacity(k);
        for m0 in (run.m0..run.m1).step_by(DOT_ROWS) {
            let (lo, hi) = block_taps(&phases[run.r], m0, DOT_ROWS, geo.out_steps, &mut taps);
            if taps.is_empty() {
                continue;
            }
            let edge = lo < 0 || hi > geo.out_steps as isize;
            let (y, ld): (&[T], usize) = if edge {
                dy.window(n, lo, hi, g * fg..(g + 1) * fg, window);
                (window, fg)
            } else {
                (&dy.data, geo.filters)
            };
            segments.clear();
            for &(j, t) in &taps {
                let row = if edge { (t - lo) as usize * fg } else { dy.offset(n, t as usize) + g * fg };
                segments.push((row, j * fg));
            }
            for c in 0..cg {
                let weights = &packed[(g * cg + c) * k * fg..][..k * fg];
                let sums = dot4(y, ld, weights, &segments, fg, fused);
                for (row, &v) in sums.iter().enumerate().take(run.m1 - m0) {
                    let index = dx_index(geo, n, run.r + geo.strides * (m0 + row), g * cg + c);
                    // SAFETY: index is inside dx and owned by this work item, as in the tiled path.
                    unsafe { *out.get().add(index) = v };
                }
            }
        }
    });
    Ok(())
}
