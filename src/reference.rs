//! The obvious nested loops, straight from the Keras formula. Slow; the other kernels are
//! tested against it.

use crate::conv::compute_new;
use crate::error::{ConvError, Result};
use crate::geometry::Geometry;
use crate::kernel::Element;
use crate::params::{Conv1dParams, DataFormat};
use ndarray::{Array3, ArrayView1, ArrayView3};
use std::mem::MaybeUninit;

/// `y[n, t, o] = bias[o] + sum_j sum_c x_pad[n, t*s + j*d, g*Cg + c] * kernel[j, c, o]`, with
/// `g = o / (filters / groups)`; computed one output at a time.
///
/// ```
/// use conv1d_rs::{conv1d, conv1d_reference, Conv1dParams, Padding};
/// use ndarray::Array3;
/// let x = Array3::from_shape_fn((2, 9, 4), |(n, t, c)| (n + 2 * t + 3 * c) as f64 % 5.0 - 2.0);
/// let kernel = Array3::from_shape_fn((3, 2, 6), |(j, c, o)| (j * 7 + c * 3 + o) as f64 % 4.0 - 1.5);
/// let params = Conv1dParams::new().groups(2).padding(Padding::Same).strides(2);
/// let fast = conv1d(x.view(), kernel.view(), None, &params).unwrap();
/// let slow = conv1d_reference(x.view(), kernel.view(), None, &params).unwrap();
/// assert_eq!(fast, slow);
/// ```
pub fn conv1d_reference<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    bias: Option<ArrayView1<T>>,
    params: &Conv1dParams,
) -> Result<Array3<T>> {
    let (p, q, r) = x.dim();
    let (k, cg, f) = kernel.dim();
    let geo = Geometry::new([p, q, r], [k, cg, f], bias.map(|b| b.len()), params)?;
    let x = match geo.data_format {
        DataFormat::ChannelsLast => x,
        DataFormat::ChannelsFirst => x.permuted_axes([0, 2, 1]),
    };
    let data = compute_new(geo.output_len()?, |out| reference_into(&geo, x, kernel, bias, out))?;
    Array3::from_shape_vec(geo.output_shape(), data).map_err(|e| ConvError::ShapeMismatch(e.to_string()))
}

/// The reference loops into a standard-layout output; `x` is viewed as `(batch, steps, channels)`.
pub(crate) fn reference_into<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    bias: Option<ArrayView1<T>>,
    out: &mut [MaybeUninit<T>],
) {
    let (cg, fg) = (geo.in_per_group(), geo.filters_per_group());
    for n in 0..geo.batch {
        for t in 0..geo.out_steps {
            for o in 0..geo.filters {
                let g = o / fg;
                let mut sum = T::zero();
                for j in 0..geo.kernel_size {
                    let step = geo.first_input_step(t) + (j * geo.dilation_rate) as isize;
                    if step < 0 || step as usize >= geo.steps {
                        continue;
                    }
                    for c in 0..cg {
                        sum = sum + x[[n, step as usize, g * cg + c]] * kernel[[j, c, o]];
                    }
                }
                if let Some(b) = bias {
                    sum = sum + b[o];
                }
                let index = match geo.data_format {
                    DataFormat::ChannelsLast => (n * geo.out_steps + t) * geo.filters + o,
                    DataFormat::ChannelsFirst => (n * geo.filters + o) * geo.out_steps + t,
                };
                out[index].write(sum);
            }
        }
    }
}
