//! Gradients of a convolution: given `dy`, the gradient of a loss with respect to the output
//! `y = conv1d(x, kernel, bias)`, compute the gradients with respect to `x`, `kernel` and `bias`.
//!
//! With `x_pad[n, p, c] = x[n, p - pad_left, c]` (zero outside the input) and
//! `g = o / (filters / groups)`:
//!
//! * `dbias[o] = sum_{n,t} dy[n, t, o]`
//! * `dkernel[j, c, o] = sum_{n,t} dy[n, t, o] * x_pad[n, t*s + j*d, g*Cg + c]`
//! * `dx[n, i, g*Cg + c] = sum over (t, j) with t*s + j*d - pad_left == i, and o in group g,
//!   of dy[n, t, o] * kernel[j, c, o]`
//!
//! Both large sums are GEMMs. `dkernel` of group `g` is `im2col(x)^T . dy`, a
//! `(taps * Cg) x Fg` result reduced over every `(n, t)`: threads take disjoint blocks of it,
//! and a small result over a long reduction also cuts the reduction into parts fixed by the
//! shapes, added up in order at the end. With stride 1, `dx` is a convolution of `dy` and runs
//! on the forward kernels; otherwise it is, for each residue class of input steps modulo the
//! stride, a stride-1 correlation of `dy` with the taps that reach that class, and threads take
//! disjoint runs of input steps. How a sum is cut never depends on the threads, so results
//! are bitwise the same for any thread count.

mod depthwise;
mod forward;
mod input;
mod lanes;
mod prefetch;
mod reference;
mod tile;
mod weights;

pub use reference::conv1d_backward_reference;

use crate::conv::{try_zeroed, try_zeroed_in};
use crate::error::{ConvError, Result};
use crate::geometry::Geometry;
use crate::kernel::{for_each_item, use_avx2, Algorithm, ComputeOptions, Element, SharedOut, PARALLEL_MIN_MACS};
use crate::params::{Conv1dParams, DataFormat};
use ndarray::{s, Array1, Array3, ArrayView3, Axis};
use std::borrow::Cow;
use tile::tile_kernel;

/// The gradients of `sum(conv1d(x, kernel, bias) * dy)`, each shaped like its variable.
///
/// ```
/// use conv1d_rs::{conv1d_backward, Conv1dParams, Gradients};
/// use ndarray::Array3;
/// let x = Array3::<f64>::ones((1, 4, 2));
/// let kernel = Array3::<f64>::ones((2, 2, 3));
/// let dy = Array3::<f64>::ones((1, 3, 3));
/// let Gradients { dx, dkernel, dbias } =
///     conv1d_backward(x.view(), kernel.view(), dy.view(), &Conv1dParams::new(), false).unwrap();
/// assert_eq!((dx.dim(), dkernel.dim(), dbias), ((1, 4, 2), (2, 2, 3), None));
/// assert_eq!(dkernel[[1, 0, 2]], 3.0); // three output steps, each reading x = 1
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients<T> {
    /// With respect to the input, in the input's data format.
    pub dx: Array3<T>,
    /// With respect to the Keras-layout kernel `(kernel_size, in_channels / groups, filters)`.
    pub dkernel: Array3<T>,
    /// With respect to the bias, when the layer has one.
    pub dbias: Option<Array1<T>>,
}

/// Backpropagates `dy` (the gradient with respect to the output, in `params.data_format`)
/// through [`conv1d`](crate::conv1d) of `x` with a Keras-layout `kernel`.
///
/// ```
/// use conv1d_rs::{conv1d_backward, Conv1dParams, Padding};
/// use ndarray::Array3;
///
/// let x = Array3::from_shape_fn((2, 10, 3), |(n, t, c)| (n + t + c) as f32);
/// let kernel = Array3::<f32>::ones((3, 3, 4)); // (kernel_size, in_channels, filters)
/// let params = Conv1dParams::new().padding(Padding::Same);
/// // The gradient of sum(y): dy is all ones, of the output's shape.
/// let dy = Array3::<f32>::ones((2, 10, 4));
/// let grads = conv1d_backward(x.view(), kernel.view(), dy.view(), &params, true).unwrap();
/// assert_eq!(grads.dx.shape(), &[2, 10, 3]);
/// assert_eq!(grads.dkernel.shape(), &[3, 3, 4]);
/// // Every output step adds each bias once.
/// assert!(grads.dbias.unwrap().iter().all(|&b| b == 20.0));
/// // An inner input step is read by all three taps of all four filters.
/// assert_eq!(grads.dx[[0, 5, 1]], 12.0);
/// ```
pub fn conv1d_backward<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    dy: ArrayView3<T>,
    params: &Conv1dParams,
    use_bias: bool,
) -> Result<Gradients<T>> {
    conv1d_backward_with(x, kernel, dy, params, use_bias, &ComputeOptions::default())
}

/// [`conv1d_backward`] with an explicit algorithm, instruction set and threading choice.
/// `Algorithm::Reference` runs [`conv1d_backward_reference`]; `Algorithm::Depthwise` needs
/// `in_channels == groups == filters`.
///
/// ```
/// use conv1d_rs::{conv1d_backward, conv1d_backward_with, Algorithm, ComputeOptions, Conv1dParams, DataFormat};
/// use ndarray::Array3;
///
/// let params = Conv1dParams::new().strides(2).data_format(DataFormat::ChannelsFirst);
/// let x = Array3::from_shape_fn((1, 4, 9), |(_, c, t)| (c * 9 + t) as f64); // (batch, channels, steps)
/// let kernel = Array3::from_shape_fn((3, 4, 2), |(j, c, o)| (j + c + o) as f64 - 3.0);
/// let dy = Array3::from_shape_fn((1, 2, 4), |(_, o, t)| (o + t) as f64); // (batch, filters, out_steps)
/// let sequential = ComputeOptions { parallel: false, ..ComputeOptions::default() };
/// let a = conv1d_backward_with(x.view(), kernel.view(), dy.view(), &params, false, &sequential).unwrap();
/// let b = conv1d_backward(x.view(), kernel.view(), dy.view(), &params, false).unwrap();
/// assert_eq!(a, b);
/// let reference = ComputeOptions { algorithm: Algorithm::Reference, ..ComputeOptions::default() };
/// let c = conv1d_backward_with(x.view(), kernel.view(), dy.view(), &params, false, &reference).unwrap();
/// assert_eq!(a, c);
/// ```
pub fn conv1d_backward_with<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    dy: ArrayView3<T>,
    params: &Conv1dParams,
    use_bias: bool,
    options: &ComputeOptions,
) -> Result<Gradients<T>> {
    conv1d_backward_recycling(x, kernel, dy, params, use_bias, options, None)
}

/// [`conv1d_backward_with`], writing `dx` into `recycled` when it is given and has room: a
/// buffer whose contents do not matter, reused instead of a fresh allocation (whose pages
/// the OS would fault in and zero on every call).
pub(crate) fn conv1d_backward_recycling<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    dy: ArrayView3<T>,
    params: &Conv1dParams,
    use_bias: bool,
    options: &ComputeOptions,
    mut recycled: Option<Vec<T>>,
) -> Result<Gradients<T>> {
    let geo = validate(&x, &kernel, &dy, params)?;
    let depthwise_shape = geo.in_per_group() == 1 && geo.filters_per_group() == 1;
    let depthwise = match options.algorithm {
        Algorithm::Reference => return reference::gradients(&geo, x, kernel, dy, use_bias),
        Algorithm::Depthwise if !depthwise_shape => {
            return Err(ConvError::InvalidParameter {
                name: "algorithm",
                message: format!(
                    "the depthwise kernel needs in_channels == groups == filters; kernel shape {:?} with groups={}",
                    kernel.dim(),
                    geo.groups
                ),
            })
        }
        Algorithm::Depthwise => true,
        Algorithm::Auto => depthwise_shape,
        // Only dx has an FFT path (through the forward kernels): dkernel runs as a GEMM.
        Algorithm::Gemm | Algorithm::Fft => false,
    };
    // Stride 1 makes dx a convolution of dy: the forward kernels (and their paths) compute it.
    // Not when the input has far fewer channels per group than dy has filters: the forward
    // tiles would be mostly empty columns, where dot products over filters fill the lanes.
    let dx_by_forward = geo.strides == 1
        && geo.in_channels > 0
        && (depthwise || !input::prefer_dot::<T>(&geo, tile_kernel::<T>(options.simd).nr));
    // Otherwise, with taps times channels no more than the filters (few input channels, a
    // stride), dx is gathered from one GEMM of dy against the kernel's columns; not for tiny
    // calls, where setting up the GEMM costs more than the dot products.
    let dx_by_columns = !dx_by_forward
        && !depthwise
        && geo.groups == 1
        && geo.kernel_size.saturating_mul(geo.in_channels) <= geo.filters
        && geo.macs() >= PARALLEL_MIN_MACS
        && geo.batch > 0
        && geo.out_steps > 0;
    let parallel = options.parallel && geo.macs() >= PARALLEL_MIN_MACS;
    let forward_dx = if dx_by_forward {
        Some(forward::input_gradient(&geo, dy, kernel, options, recycled.take())?)
    } else if dx_by_columns {
        Some(forward::input_gradient_by_columns(&geo, dy, kernel, options, parallel, recycled.take())?)
    } else {
        None
    };
    let x = channels_last(x, geo.data_format);
    let dy = channels_last(dy, geo.data_format);
    let mut dx = match forward_dx {
        Some(dx) => dx,
        None => try_zeroed_in(recycled, x.len())?,
    };
    let mut dkernel = try_zeroed::<T>(kernel.len())?;
    let mut dbias = None;
    // Supervised, so that a cancelled call or a worker without scratch stops early and
    // reports it, instead of returning partial gradients.
    let mut outcome = Ok(());
    crate::kernel::supervised(|| {
        outcome = (|| {
            // Every gradient reads dy (and x) as contiguous channels-last rows.
            let dy = Rows::new(dy, parallel)?;
            if use_bias {
                dbias = Some(bias_gradient(&dy, options.parallel)?);
            }
            if geo.batch > 0 && geo.out_steps > 0 && geo.in_channels > 0 {
                let x = Rows::new(x, parallel)?;
                let fused = use_avx2(options.simd);
                if depthwise {
                    if !dx_by_forward {
                        depthwise::input_gradient(&geo, &dy, kernel, fused, parallel, &mut dx)?;
                    }
                    depthwise::kernel_gradient(&geo, &x, &dy, fused, parallel, &mut dkernel)?;
                } else {
                    let tk = tile_kernel::<T>(options.simd);
                    if !dx_by_forward && !dx_by_columns {
                        input::input_gradient(&geo, &dy, kernel, tk, fused, parallel, &mut dx)?;
                    }
                    weights::kernel_gradient(&geo, &x, &dy, tk, parallel, &mut dkernel)?;
                }
            }
            Ok(())
        })();
    })?;
    outcome?;
    let (p, q, r) = x.dim();
    let dx_shape = match geo.data_format {
        DataFormat::ChannelsLast => (p, q, r),
        DataFormat::ChannelsFirst => (p, r, q),
    };
    Ok(Gradients {
        dx: Array3::from_shape_vec(dx_shape, dx).map_err(shape_error)?,
        dkernel: Array3::from_shape_vec(kernel.dim(), dkernel).map_err(shape_error)?,
        dbias,
    })
}

/// Threads a parallel loop may use. Work is split by this count for balance only: how each
/// sum is cut and ordered depends on the shapes alone.
fn workers(parallel: bool) -> usize {
    if parallel { crate::kernel::pool_threads() } else { 1 }
}

/// Checks the shapes, `dy` included, and resolves the geometry.
fn validate<T>(
    x: &ArrayView3<T>,
    kernel: &ArrayView3<T>,
    dy: &ArrayView3<T>,
    params: &Conv1dParams,
) -> Result<Geometry> {
    let geo = Geometry::new(dims(x), dims(kernel), None, params)?;
    let expected = geo.output_shape();
    let received = dims(dy);
    if expected != received {
        return Err(ConvError::ShapeMismatch(format!(
            "dy has shape {received:?}, but the output of this convolution has shape {expected:?} \
             (input shape {:?}, kernel shape {:?}, data_format={}); dy must have the output's shape",
            dims(x),
            dims(kernel),
            geo.data_format
        )));
    }
    Ok(geo)
}

fn dims<T>(a: &ArrayView3<T>) -> [usize; 3] {
    let (p, q, r) = a.dim();
    [p, q, r]
}

fn shape_error(e: ndarray::ShapeError) -> ConvError {
    ConvError::ShapeMismatch(e.to_string())
}

/// `a` viewed as `(batch, steps, channels)` whatever the data format.
fn channels_last<T>(a: ArrayView3<T>, format: DataFormat) -> ArrayView3<T> {
    match format {
        DataFormat::ChannelsLast => a,
        DataFormat::ChannelsFirst => a.permuted_axes([0, 2, 1]),
    }
}

/// Rows of `dy` per part of the bias gradient, at least.
const BIAS_PART_ROWS: usize = 4096;

/// `dbias[o] = sum_{n,t} dy[n, t, o]`. The rows, in `(n, t)` order, are cut into parts fixed
/// by the shape; each part is summed in order (in parallel), then the parts are added in order.
fn bias_gradient<T: Element>(dy: &Rows<'_, T>, parallel: bool) -> Result<Array1<T>> {
    let (data, filters) = (&dy.data[..], dy.width);
    let rows = data.len().checked_div(filters).unwrap_or(0);
    let parts = (rows / BIAS_PART_ROWS).clamp(1, 16);
    let part_len = rows.div_ceil(parts);
    let mut sums = try_zeroed::<T>(parts * filters)?;
    let out = SharedOut(sums.as_mut_ptr());
    for_each_item::<T, _>(parts, 0, parallel && parts > 1, |part, _| {
        // SAFETY: part `part` owns sums[part * filters..][..filters].
        let acc = unsafe { std::slice::from_raw_parts_mut(out.get().add(part * filters), filters) };
        let (r0, r1) = (part * part_len, ((part + 1) * part_len).min(rows));
        if r0 < r1 {
            for row in data[r0 * filters..r1 * filters].chunks_exact(filters) {
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a = *a + v);
            }
        }
    });
    add_parts_in_order(&mut sums, filters);
    sums.truncate(filters);
    Ok(Array1::from(sums))
}

/// Adds the consecutive parts of `sums`, each `len` long, into the first, part by part in
/// order and each element on its own: the order depends on the shapes alone.
fn add_parts_in_order<T: Element>(sums: &mut [T], len: usize) {
    if len == 0 {
        return; // nothing to add, and no zero-length chunks
    }
    let (first, rest) = sums.split_at_mut(len);
    for part in rest.chunks_exact(len) {
        first.iter_mut().zip(part).for_each(|(a, &b)| *a = *a + b);
    }
}

/// A `(batch, steps, width)` array in contiguous channels-last memory: borrowed when the
/// caller's array already is, else copied (channels-first arrays are transposed once here).
/// The kernels read padding as zeros by copying the few windows that overlap an edge.
pub(crate) struct Rows<'a, T: Clone> {
    pub data: Cow<'a, [T]>,
    pub steps: usize,
    pub width: usize,
}

/// Steps copied per work item.
const COPY_ROWS: usize = 64;

impl<'a, T: Element> Rows<'a, T> {
    fn new(src: ArrayView3<'a, T>, parallel: bool) -> Result<Self> {
        let (batch, steps, width) = src.dim();
        if let Some(data) = src.to_slice() {
            return Ok(Rows { data: Cow::Borrowed(data), steps, width });
        }
        let mut data = try_zeroed::<T>(src.len())?;
        let chunks = steps.div_ceil(COPY_ROWS);
        let out = SharedOut(data.as_mut_ptr());
        let parallel = parallel && src.len() >= 1 << 16;
        for_each_item::<T, _>(batch * chunks, 0, parallel, |item, _| {
            let (n, chunk) = (item / chunks, item % chunks);
            let (s0, s1) = (chunk * COPY_ROWS, ((chunk + 1) * COPY_ROWS).min(steps));
            // SAFETY: steps s0..s1 of batch item n are inside `data` (src.len() elements) and
            // belong to this work item alone; nothing else reads `data` meanwhile.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(out.get().add((n * steps + s0) * width), (s1 - s0) * width) };
            let block = src.slice(s![n, s0..s1, ..]);
            if block.stride_of(Axis(1)) == 1 || width <= 1 {
                for (row, to) in block.outer_iter().zip(dst.chunks_exact_mut(width)) {
                    to.iter_mut().zip(row.iter()).for_each(|(d, &v)| *d = v);
                }
            } else {
                // Channels-first source: read along steps, where its memory is contiguous.
                for (c, column) in block.axis_iter(Axis(1)).enumerate() {
                    for (to, &v) in dst[c..].iter_mut().step_by(width).zip(column.iter()) {
                        *to = v;
                    }
                }
            }
        });
        Ok(Rows { data: Cow::Owned(data), steps, width })
    }

    /// Offset of step `t` of batch item `n`.
    #[inline]
    pub fn offset(&self, n: usize, t: usize) -> usize {
        (n * self.steps + t) * self.width
    }

    /// Copies steps `lo..hi` (which may reach past either end) of batch item `n`, columns
    /// `cols`, into `out` as rows of `cols.len()`, with zeros for steps outside the array.
    pub fn window(&self, n: usize, lo: isize, hi: isize, cols: std::ops::Range<usize>, out: &mut [T]) {
        let w = cols.len();
        // Kernels read the whole window through raw pointers: a short buffer is a bug.
        assert!(hi <= lo || out.len() >= (hi - lo) as usize * w, "window of {}..{} does not fit", lo, hi);
        for (t, to) in (lo..hi).zip(out.chunks_exact_mut(w)) {
            if t >= 0 && (t as usize) < self.steps {
                to.copy_from_slice(&self.data[self.offset(n, t as usize) + cols.start..][..w]);
            } else {
                to.fill(T::zero());
            }
        }
    }
}
