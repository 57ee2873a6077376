//! `dx` of a stride-1 convolution on the forward kernels: it is `dy` convolved with the
//! kernel reversed along its taps and with its channel axes swapped (see
//! [`Geometry::input_gradient`]), so it gets every forward path, the FFT one included.

use crate::conv::{ensure_allocatable, try_compute_new, PreparedKernel};
use crate::error::Result;
use crate::geometry::Geometry;
use crate::kernel::{Algorithm, ComputeOptions, Element};
use ndarray::{Array3, ArrayView3};

/// `dx` in the caller's layout, from `dy` in the caller's layout.
pub(super) fn input_gradient<T: Element>(
    geo: &Geometry,
    dy: ArrayView3<T>,
    kernel: ArrayView3<T>,
    options: &ComputeOptions,
) -> Result<Vec<T>> {
    debug_assert_ne!(options.algorithm, Algorithm::Reference);
    let transposed = geo.input_gradient()?;
    let (k, cg, fg) = (geo.kernel_size, geo.in_per_group(), geo.filters_per_group());
    ensure_allocatable::<T>(kernel.len(), "reversed kernel")?;
    // reversed[j, o, g*cg + c] = kernel[k-1-j, c, g*fg + o]: filters of group g become its inputs.
    let reversed =
        Array3::from_shape_fn((k, fg, geo.in_channels), |(j, o, ch)| kernel[[k - 1 - j, ch % cg, (ch / cg) * fg + o]]);
    let prepared = PreparedKernel::new(reversed.view(), geo.groups, options)?;
    let len = geo.batch * geo.steps * geo.in_channels;
    try_compute_new(len, |out| prepared.run_checked(&transposed, dy, None, out))
}
