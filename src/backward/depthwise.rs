//! One filter per input channel (`groups == in_channels == filters`): every sum pairs a
//! channel with itself, so both gradients vectorise across channels, contiguous in the
//! channels-last rows. Taps that would read padding are skipped.

use super::lanes::{accumulate, sweep};
use super::Rows;
use crate::conv::try_zeroed;
use crate::error::Result;
use crate::geometry::Geometry;
use crate::kernel::{for_each_item, Element, SharedOut};
use crate::params::DataFormat;
use ndarray::ArrayView3;

/// Input steps per `dx` work item.
const STEPS_PER_ITEM: usize = 64;
/// Output steps swept per tap before moving to the next, keeping their rows in L1.
const STEP_CHUNK: usize = 64;
/// Work items `dkernel` aims for.
const KERNEL_ITEMS: usize = 8;

/// `dx[n, i, c] = sum_j dy[n, (i + pad_left - j*d) / s, c] * kernel[j, 0, c]` over the taps
/// that land on a whole output step inside the output, in tap order.
pub(super) fn input_gradient<T: Element>(
    geo: &Geometry,
    dy: &Rows<'_, T>,
    kernel: ArrayView3<T>,
    fused: bool,
    parallel: bool,
    dx: &mut [T],
) -> Result<()> {
    let channels = geo.in_channels;
    let mut weights = try_zeroed::<T>(kernel.len())?;
    for (w, &v) in weights.iter_mut().zip(kernel.iter()) {
        *w = v;
    }
    let tiles = geo.steps.div_ceil(STEPS_PER_ITEM);
    let out = SharedOut(dx.as_mut_ptr());
    let s = geo.strides as isize;
    for_each_item::<T, _>(geo.batch * tiles, channels, parallel, |item, acc| {
        let (n, tile) = (item / tiles, item % tiles);
        for i in tile * STEPS_PER_ITEM..((tile + 1) * STEPS_PER_ITEM).min(geo.steps) {
            acc.fill(T::zero());
            for j in 0..geo.kernel_size {
                let num = (i + geo.pad_left) as isize - (j * geo.dilation_rate) as isize;
                if num % s != 0 || num < 0 || num / s >= geo.out_steps as isize {
                    continue;
                }
                let row = &dy.data[dy.offset(n, (num / s) as usize)..][..channels];
                accumulate(acc, row, &weights[j * channels..][..channels], fused);
            }
            match geo.data_format {
                DataFormat::ChannelsLast => {
                    // SAFETY: row i of batch item n lies inside dx and belongs to this item alone.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.get().add((n * geo.steps + i) * channels), channels)
                    };
                    dst.copy_from_slice(acc);
                }
                DataFormat::ChannelsFirst => {
                    for (c, &v) in acc.iter().enumerate() {
                        // SAFETY: step i of batch item n is inside dx and belongs to this item alone.
                        unsafe { *out.get().add((n * channels + c) * geo.steps + i) = v };
                    }
                }
            }
        }
    });
    Ok(())
}

/// `dkernel[j, 0, c] = sum_{n,t} x_pad[n, t*s + j*d, c] * dy[n, t, c]`, summed over `n` then `t`.
/// Work items own blocks of channels (and, for few channels, of taps) so each reads only its
/// share of `x` and `dy`.
pub(super) fn kernel_gradient<T: Element>(
    geo: &Geometry,
    x: &Rows<'_, T>,
    dy: &Rows<'_, T>,
    fused: bool,
    parallel: bool,
    dkernel: &mut [T],
) -> Result<()> {
    let (channels, k) = (geo.in_channels, geo.kernel_size);
    let per_block = channels.div_ceil(KERNEL_ITEMS).next_multiple_of(16).min(channels);
    let channel_blocks = channels.div_ceil(per_block);
    let taps_per_item = k.div_ceil(KERNEL_ITEMS.div_ceil(channel_blocks).min(k));
    let tap_blocks = k.div_ceil(taps_per_item);
    let out = SharedOut(dkernel.as_mut_ptr());
    let s = geo.strides;
    for_each_item::<T, _>(channel_blocks * tap_blocks, taps_per_item * per_block, parallel, |item, sums| {
        let (cb, tb) = (item / tap_blocks, item % tap_blocks);
        let c0 = cb * per_block;
        let width = per_block.min(channels - c0);
        let taps = tb * taps_per_item..((tb + 1) * taps_per_item).min(k);
        let sums = &mut sums[..taps.len() * width];
        sums.fill(T::zero());
        for n in 0..geo.batch {
            for t0 in (0..geo.out_steps).step_by(STEP_CHUNK) {
                let t1 = (t0 + STEP_CHUNK).min(geo.out_steps);
                for (q, j) in taps.clone().enumerate() {
                    // Output steps of the chunk whose input step t*s + j*d - pad_left exists;
                    // the others read padding and add nothing.
                    let shift = j * geo.dilation_rate;
                    let first = geo.pad_left.saturating_sub(shift).div_ceil(s).max(t0);
                    let end = match (geo.steps + geo.pad_left).checked_sub(shift + 1) {
                        Some(last) => (last / s + 1).min(t1),
                        None => continue,
                    };
                    if first >= end {
                        continue;
                    }
                    let xs = &x.data[x.offset(n, first * s + shift - geo.pad_left) + c0..];
                    let ys = &dy.data[dy.offset(n, first) + c0..];
                    sweep(&mut sums[q * width..][..width], xs, s * channels, ys, channels, end - first, fused);
                }
            }
        }
        for (q, j) in taps.enumerate() {
            // SAFETY: kernel row j, channels c0..c0+width, lies inside dkernel and belongs to
            // this item alone (items split channels x taps).
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(j * channels + c0), width) };
            dst.copy_from_slice(&sums[q * width..][..width]);
        }
    });
    Ok(())
}
