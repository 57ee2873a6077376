//! `dx` on the forward kernels. With stride 1 it is `dy` convolved with the kernel reversed
//! along its taps and with its channel axes swapped (see [`Geometry::input_gradient`]), so it
//! gets every forward path, the FFT one included. With few taps times channels, the products
//! of `dy` with every (tap, channel) column of the kernel are one GEMM, gathered afterwards.

use super::input::dx_index;
use crate::conv::{ensure_allocatable, try_compute_in, try_zeroed_in, PreparedKernel};
use crate::error::Result;
use crate::geometry::Geometry;
use crate::kernel::{for_each_item, Algorithm, ComputeOptions, Element, SharedOut};
use crate::params::Conv1dParams;
use ndarray::{Array3, ArrayView3};

/// `dx` in the caller's layout, from `dy` in the caller's layout, in `recycled` if given.
pub(super) fn input_gradient<T: Element>(
    geo: &Geometry,
    dy: ArrayView3<T>,
    kernel: ArrayView3<T>,
    options: &ComputeOptions,
    recycled: Option<Vec<T>>,
) -> Result<Vec<T>> {
    debug_assert_ne!(options.algorithm, Algorithm::Reference);
    let transposed = geo.input_gradient()?;
    let (k, cg, fg) = (geo.kernel_size, geo.in_per_group(), geo.filters_per_group());
    ensure_allocatable::<T>(kernel.len(), "reversed kernel")?;
    // reversed[j, o, g*cg + c] = kernel[k-1-j, c, g*fg + o]: filters of group g become its inputs.
    let reversed =
        Array3::from_shape_fn((k, fg, geo.in_channels), |(j, o, ch)| kernel[[k - 1 - j, ch % cg, (ch / cg) * fg + o]]);
    let prepared = PreparedKernel::for_one_call(reversed.view(), geo.groups, options)?;
    let len = geo.batch * geo.steps * geo.in_channels;
    try_compute_in(recycled, len, |out| prepared.run_checked(&transposed, dy, None, out))
}

/// `dx` in the caller's layout when a strided (or few-channel) convolution's taps times
/// channels are no more than its filters: `z[n, t, j*cg + c] = sum_o dy[n, t, o] * kernel[j, c, o]`
/// is a one-tap convolution of `dy` on the forward GEMM, no larger than `dy`, and each
/// `dx[n, i, c]` then adds the `z[n, t, j*cg + c]` with `t*s + j*d - pad_left == i`, by
/// increasing `t`. One group only.
pub(super) fn input_gradient_by_columns<T: Element>(
    geo: &Geometry,
    dy: ArrayView3<T>,
    kernel: ArrayView3<T>,
    options: &ComputeOptions,
    parallel: bool,
    recycled: Option<Vec<T>>,
) -> Result<Vec<T>> {
    debug_assert_eq!(geo.groups, 1);
    let (k, cg, filters) = (geo.kernel_size, geo.in_channels, geo.filters);
    ensure_allocatable::<T>(kernel.len(), "transposed kernel")?;
    let columns = Array3::from_shape_fn((1, filters, k * cg), |(_, o, q)| kernel[[q / cg, q % cg, o]]);
    let prepared = PreparedKernel::for_one_call(columns.view(), 1, &ComputeOptions { algorithm: Algorithm::Gemm, ..*options })?;
    let dy = super::channels_last(dy, geo.data_format);
    // A new array, in standard layout from offset 0.
    let (z, _) = prepared.forward(dy, None, &Conv1dParams::new())?.into_raw_vec_and_offset();
    let width = k * cg;
    let mut dx = try_zeroed_in(recycled, geo.batch * geo.steps * cg)?;
    let out = SharedOut(dx.as_mut_ptr());
    // One batch item per work item, its output steps in order: each dx element receives its
    // terms in a fixed order (by output step), whatever the threads.
    for_each_item::<T, _>(geo.batch, 0, parallel, |n, _| {
        for t in 0..geo.out_steps {
            let row = &z[(n * geo.out_steps + t) * width..][..width];
            for j in 0..k {
                let i = (t * geo.strides + j * geo.dilation_rate) as isize - geo.pad_left as isize;
                if i < 0 || i as usize >= geo.steps {
                    continue;
                }
                for (c, &v) in row[j * cg..(j + 1) * cg].iter().enumerate() {
                    let index = dx_index(geo, n, i as usize, c);
                    // SAFETY: index lies in batch item n's part of dx, which only this item touches.
                    unsafe { *out.get().add(index) = *out.get().add(index) + v };
                }
            }
        }
    });
    Ok(dx)
}
