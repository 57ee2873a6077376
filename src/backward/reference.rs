//! The backward pass as the obvious loops: every output gradient element pushes its
//! contributions to the bias, kernel and input gradients. Slow; the fast paths are tested
//! against it, and it is tested against finite differences of the forward reference.

use super::{channels_last, validate, Gradients};
use crate::conv::try_zeroed;
use crate::error::{ConvError, Result};
use crate::geometry::Geometry;
use crate::kernel::Element;
use crate::params::{Conv1dParams, DataFormat};
use ndarray::{Array1, Array3, ArrayView3};

/// The gradients of `sum(conv1d(x, kernel, bias) * dy)` by straightforward loops; same
/// arguments and results as [`conv1d_backward`](crate::conv1d_backward).
///
/// ```
/// use conv1d_rs::{conv1d_backward, conv1d_backward_reference, Conv1dParams, Padding};
/// use ndarray::Array3;
/// let x = Array3::from_shape_fn((2, 11, 4), |(n, t, c)| ((n + 3 * t + c) % 7) as f64 - 3.0);
/// let kernel = Array3::from_shape_fn((3, 2, 6), |(j, c, o)| ((2 * j + c + o) % 5) as f64 - 2.0);
/// let params = Conv1dParams::new().groups(2).strides(2).dilation_rate(2).padding(Padding::Causal);
/// let dy = Array3::from_shape_fn((2, 6, 6), |(n, t, o)| ((n + t + 2 * o) % 3) as f64 - 1.0);
/// let slow = conv1d_backward_reference(x.view(), kernel.view(), dy.view(), &params, true).unwrap();
/// let fast = conv1d_backward(x.view(), kernel.view(), dy.view(), &params, true).unwrap();
/// assert_eq!(slow, fast);
/// ```
pub fn conv1d_backward_reference<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    dy: ArrayView3<T>,
    params: &Conv1dParams,
    use_bias: bool,
) -> Result<Gradients<T>> {
    let geo = validate(&x, &kernel, &dy, params)?;
    gradients(&geo, x, kernel, dy, use_bias)
}

/// The reference loops for a validated geometry.
pub(super) fn gradients<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    dy: ArrayView3<T>,
    use_bias: bool,
) -> Result<Gradients<T>> {
    let x = channels_last(x, geo.data_format);
    let dy = channels_last(dy, geo.data_format);
    let (cg, fg) = (geo.in_per_group(), geo.filters_per_group());
    let mut dx = Array3::from_shape_vec(x.raw_dim(), try_zeroed::<T>(x.len())?).map_err(shape_error)?;
    let mut dkernel = Array3::from_shape_vec(kernel.raw_dim(), try_zeroed::<T>(kernel.len())?).map_err(shape_error)?;
    let mut dbias = Array1::from(try_zeroed::<T>(geo.filters)?);
    for n in 0..geo.batch {
        for t in 0..geo.out_steps {
            for o in 0..geo.filters {
                let g = o / fg;
                let grad = dy[[n, t, o]];
                dbias[o] = dbias[o] + grad;
                for j in 0..geo.kernel_size {
                    let step = geo.first_input_step(t) + (j * geo.dilation_rate) as isize;
                    if step < 0 || step as usize >= geo.steps {
                        continue;
                    }
                    let i = step as usize;
                    for c in 0..cg {
                        dkernel[[j, c, o]] = dkernel[[j, c, o]] + grad * x[[n, i, g * cg + c]];
                        dx[[n, i, g * cg + c]] = dx[[n, i, g * cg + c]] + grad * kernel[[j, c, o]];
                    }
                }
            }
        }
    }
    let dx = match geo.data_format {
        DataFormat::ChannelsLast => dx,
        DataFormat::ChannelsFirst => {
            let mut out = Array3::from_shape_vec((geo.batch, geo.in_channels, geo.steps), try_zeroed::<T>(dx.len())?)
                .map_err(shape_error)?;
            out.assign(&dx.view().permuted_axes([0, 2, 1]));
            out
        }
    };
    Ok(Gradients { dx, dkernel, dbias: use_bias.then_some(dbias) })
}

fn shape_error(e: ndarray::ShapeError) -> ConvError {
    ConvError::ShapeMismatch(e.to_string())
}
