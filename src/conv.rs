//! The public entry points: validate, choose a kernel, run it.

use crate::error::{ConvError, Result};
use crate::geometry::Geometry;
use crate::kernel::depthwise::{self, DepthwiseWeights};
use crate::kernel::fft::{self, FftWeights};
use crate::kernel::gemm::{self, PackedWeights};
use crate::kernel::microkernel::MicroKernel;
use crate::kernel::{Algorithm, ComputeOptions, Element};
use crate::params::{Conv1dParams, DataFormat};
use crate::reference::reference_into;
use ndarray::{Array3, ArrayView1, ArrayView3, ArrayViewMut3};
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

/// Convolves `x` with a Keras-layout `kernel` of shape `(kernel_size, in_channels / groups, filters)`
/// and adds `bias`, returning a new array in `params.data_format`.
///
/// ```
/// use conv1d_rs::{conv1d, Conv1dParams, Padding};
/// use ndarray::{array, Array3};
///
/// // One sequence of 5 steps with 1 channel; a 2-tap moving sum into 1 filter.
/// let x = Array3::from_shape_vec((1, 5, 1), vec![1.0_f32, 2.0, 3.0, 4.0, 5.0]).unwrap();
/// let kernel = Array3::from_elem((2, 1, 1), 1.0_f32);
/// let y = conv1d(x.view(), kernel.view(), None, &Conv1dParams::new()).unwrap();
/// assert_eq!(y.into_raw_vec_and_offset().0, vec![3.0, 5.0, 7.0, 9.0]);
///
/// let causal = Conv1dParams::new().padding(Padding::Causal);
/// let y = conv1d(x.view(), kernel.view(), Some(array![10.0_f32].view()), &causal).unwrap();
/// assert_eq!(y.shape(), &[1, 5, 1]);
/// assert_eq!(y[[0, 0, 0]], 11.0);
/// ```
pub fn conv1d<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    bias: Option<ArrayView1<T>>,
    params: &Conv1dParams,
) -> Result<Array3<T>> {
    conv1d_with(x, kernel, bias, params, &ComputeOptions::default())
}

/// [`conv1d`] with an explicit algorithm, instruction set and threading choice.
pub fn conv1d_with<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    bias: Option<ArrayView1<T>>,
    params: &Conv1dParams,
    options: &ComputeOptions,
) -> Result<Array3<T>> {
    check_kernel_groups(kernel.dim(), params.groups)?;
    PreparedKernel::for_one_call(kernel, params.groups, options)?.forward(x, bias, params)
}

/// [`conv1d`] writing into a caller's buffer of the output shape, for buffer reuse.
///
/// ```
/// use conv1d_rs::{conv1d_into, Conv1dParams};
/// use ndarray::Array3;
/// let x = Array3::<f64>::ones((2, 8, 3));
/// let kernel = Array3::<f64>::ones((3, 3, 4));
/// let mut out = Array3::<f64>::zeros((2, 6, 4));
/// conv1d_into(x.view(), kernel.view(), None, &Conv1dParams::new(), out.view_mut()).unwrap();
/// assert!(out.iter().all(|&v| v == 9.0));
/// ```
pub fn conv1d_into<T: Element>(
    x: ArrayView3<T>,
    kernel: ArrayView3<T>,
    bias: Option<ArrayView1<T>>,
    params: &Conv1dParams,
    out: ArrayViewMut3<T>,
) -> Result<()> {
    check_kernel_groups(kernel.dim(), params.groups)?;
    PreparedKernel::for_one_call(kernel, params.groups, &ComputeOptions::default())?.forward_into(x, bias, params, out)
}

fn check_kernel_groups((_, _, filters): (usize, usize, usize), groups: usize) -> Result<()> {
    if groups == 0 {
        return Err(ConvError::InvalidParameter { name: "groups", message: "must be a positive integer; received groups=0".into() });
    }
    if filters % groups != 0 {
        return Err(ConvError::ShapeMismatch(format!(
            "The number of filters must be evenly divisible by the number of groups. Received: groups={groups}, filters={filters}."
        )));
    }
    Ok(())
}

/// A kernel packed once for repeated calls (the layer keeps one between calls).
///
/// ```
/// use conv1d_rs::{Conv1dParams, ComputeOptions, PreparedKernel};
/// use ndarray::Array3;
/// let kernel = Array3::<f32>::ones((3, 4, 8));
/// let prepared = PreparedKernel::new(kernel.view(), 1, &ComputeOptions::default()).unwrap();
/// let x = Array3::<f32>::ones((2, 10, 4));
/// let y = prepared.forward(x.view(), None, &Conv1dParams::new()).unwrap();
/// assert_eq!(y.shape(), &[2, 8, 8]);
/// ```
#[derive(Clone)]
pub struct PreparedKernel<T: Element> {
    kernel_shape: [usize; 3],
    groups: usize,
    options: ComputeOptions,
    packed: Packed<T>,
    long_kernel: Option<Arc<LongKernel<T>>>,
    /// Made for a single call (see [`PreparedKernel::for_one_call`]).
    one_call: bool,
}

/// A long kernel kept for the FFT path, with its spectra for the last dilation used.
struct LongKernel<T: Element> {
    kernel: Array3<T>,
    finite: bool,
    spectra: Mutex<Option<Arc<FftWeights<T>>>>,
}

/// Kernels shorter than this never pay for FFTs.
const FFT_MIN_TAPS: usize = 16;
/// Largest kernel spectra kept in memory.
const FFT_MAX_SPECTRA_BYTES: usize = 256 << 20;

impl<T: Element> LongKernel<T> {
    /// The spectra for `dilation_rate`, transformed on first use; None when the call stopped
    /// while transforming them.
    fn spectra(&self, groups: usize, dilation_rate: usize, parallel: bool) -> Option<Arc<FftWeights<T>>> {
        let mut cached = self.spectra.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match cached.as_ref() {
            Some(weights) if weights.dilation_rate == dilation_rate => Some(Arc::clone(weights)),
            _ => {
                let weights = Arc::new(FftWeights::new(self.kernel.view(), groups, dilation_rate, parallel)?);
                *cached = Some(Arc::clone(&weights));
                Some(weights)
            }
        }
    }
}

#[derive(Clone)]
enum Packed<T: Element> {
    Gemm(PackedWeights<T>, MicroKernel<T>),
    Depthwise(DepthwiseWeights<T>),
    Reference(Array3<T>),
}

impl<T: Element> PreparedKernel<T> {
    /// Packs `kernel` (Keras layout) for `groups` groups, choosing the algorithm from its shape,
    /// to be kept for many calls.
    pub fn new(kernel: ArrayView3<T>, groups: usize, options: &ComputeOptions) -> Result<Self> {
        Self::with_use(kernel, groups, options, false)
    }

    /// As [`PreparedKernel::new`], for a single call: the FFT path is then taken only where it
    /// pays for transforming the kernel too. [`crate::conv1d`] uses it.
    ///
    /// ```
    /// use conv1d_rs::{Conv1dParams, ComputeOptions, PreparedKernel};
    /// use ndarray::Array3;
    /// let kernel = Array3::<f32>::ones((31, 2, 2));
    /// let once = PreparedKernel::for_one_call(kernel.view(), 1, &ComputeOptions::default()).unwrap();
    /// let x = Array3::<f32>::ones((1, 40, 2));
    /// let y = once.forward(x.view(), None, &Conv1dParams::new()).unwrap();
    /// assert!(y.iter().all(|&v| v == 62.0));
    /// ```
    pub fn for_one_call(kernel: ArrayView3<T>, groups: usize, options: &ComputeOptions) -> Result<Self> {
        Self::with_use(kernel, groups, options, true)
    }

    /// [`PreparedKernel::new`] or, with `one_call`, [`PreparedKernel::for_one_call`].
    pub(crate) fn with_use(kernel: ArrayView3<T>, groups: usize, options: &ComputeOptions, one_call: bool) -> Result<Self> {
        let (kernel_size, in_per_group, filters) = kernel.dim();
        check_kernel_groups((kernel_size, in_per_group, filters), groups)?;
        kernel_size
            .checked_mul(in_per_group)
            .and_then(|v| v.checked_mul(filters))
            .filter(|&n| n <= isize::MAX as usize / 64)
            .ok_or_else(|| ConvError::TooLarge(format!("kernel of shape {:?} is too large", kernel.dim())))?;
        let depthwise_shape = in_per_group == 1 && filters == groups;
        let algorithm = match options.algorithm {
            Algorithm::Auto if depthwise_shape => Algorithm::Depthwise,
            Algorithm::Auto => Algorithm::Gemm,
            Algorithm::Depthwise if !depthwise_shape => {
                return Err(ConvError::InvalidParameter {
                    name: "algorithm",
                    message: format!(
                        "the depthwise kernel needs in_channels == groups == filters; kernel shape {:?} with groups={groups}",
                        kernel.dim()
                    ),
                })
            }
            chosen => chosen,
        };
        // Packing allocates infallibly, and a failed allocation aborts the process: check
        // first that the packed weights and a copy of the kernel can be had (a broadcast
        // kernel may be far larger than the memory behind it).
        let elements = kernel_size * in_per_group * filters;
        let packed_len = match algorithm {
            Algorithm::Depthwise | Algorithm::Reference => Some(elements),
            _ => {
                let nr = T::microkernel(options.simd, filters / groups).nr;
                (filters / groups)
                    .div_ceil(nr)
                    .checked_mul(nr * groups)
                    .and_then(|v| v.checked_mul(kernel_size * in_per_group))
            }
        };
        let needed = packed_len.and_then(|n| n.checked_add(elements)).ok_or_else(|| {
            ConvError::TooLarge(format!("kernel of shape {:?} with groups={groups} is too large to pack", kernel.dim()))
        })?;
        ensure_allocatable::<T>(needed, "packed kernel")?;
        let long_kernel = match algorithm {
            Algorithm::Fft => true,
            Algorithm::Auto | Algorithm::Gemm | Algorithm::Depthwise => {
                options.algorithm == Algorithm::Auto && kernel_size >= FFT_MIN_TAPS
            }
            Algorithm::Reference => false,
        }
        .then(|| {
            Arc::new(LongKernel {
                kernel: kernel.to_owned(),
                finite: kernel.iter().all(|v| v.is_finite()),
                spectra: Mutex::new(None),
            })
        });
        let packed = match algorithm {
            Algorithm::Depthwise => Packed::Depthwise(DepthwiseWeights::new(kernel)),
            Algorithm::Reference => Packed::Reference(kernel.to_owned()),
            _ => {
                let mk = T::microkernel(options.simd, filters / groups);
                Packed::Gemm(PackedWeights::new(kernel, groups, mk.nr), mk)
            }
        };
        Ok(PreparedKernel { kernel_shape: [kernel_size, in_per_group, filters], groups, options: *options, packed, long_kernel, one_call })
    }

    /// The algorithm this kernel was packed for.
    pub fn algorithm(&self) -> Algorithm {
        if self.options.algorithm == Algorithm::Fft {
            return Algorithm::Fft;
        }
        match self.packed {
            Packed::Gemm(..) => Algorithm::Gemm,
            Packed::Depthwise(_) => Algorithm::Depthwise,
            Packed::Reference(_) => Algorithm::Reference,
        }
    }

    /// Checks the shapes against this kernel and returns the call's geometry.
    pub fn geometry(&self, x_shape: [usize; 3], bias_len: Option<usize>, params: &Conv1dParams) -> Result<Geometry> {
        if params.groups != self.groups {
            return Err(ConvError::InvalidParameter {
                name: "groups",
                message: format!("the kernel was prepared for groups={}, received groups={}", self.groups, params.groups),
            });
        }
        Geometry::new(x_shape, self.kernel_shape, bias_len, params)
    }

    /// Convolves `x`, returning a new array.
    pub fn forward(&self, x: ArrayView3<T>, bias: Option<ArrayView1<T>>, params: &Conv1dParams) -> Result<Array3<T>> {
        let geo = self.geometry(dims(&x), bias.map(|b| b.len()), params)?;
        let data = try_compute_new(geo.output_len()?, |out| self.run_checked(&geo, x, bias, out))?;
        Array3::from_shape_vec(geo.output_shape(), data).map_err(|e| ConvError::ShapeMismatch(e.to_string()))
    }

    /// Convolves `x` into `out`, which must have the output shape.
    pub fn forward_into(
        &self,
        x: ArrayView3<T>,
        bias: Option<ArrayView1<T>>,
        params: &Conv1dParams,
        mut out: ArrayViewMut3<T>,
    ) -> Result<()> {
        let geo = self.geometry(dims(&x), bias.map(|b| b.len()), params)?;
        let expected = geo.output_shape();
        let received = dims(&out.view());
        if expected != received {
            return Err(ConvError::OutputShape { expected, received });
        }
        match out.as_slice_mut() {
            Some(slice) => {
                let len = slice.len();
                // SAFETY: `T` and `MaybeUninit<T>` have the same layout; the kernels only write.
                let slice = unsafe { std::slice::from_raw_parts_mut(slice.as_mut_ptr().cast::<MaybeUninit<T>>(), len) };
                self.run_checked(&geo, x, bias, slice)?;
            }
            None => {
                let data = try_compute_new(geo.output_len()?, |out| self.run_checked(&geo, x, bias, out))?;
                let result = ArrayView3::from_shape(expected, &data).map_err(|e| ConvError::ShapeMismatch(e.to_string()))?;
                out.assign(&result);
            }
        }
        Ok(())
    }

    /// Writes every element of `out`, or returns why it stopped early (cancelled, or a
    /// working buffer could not be allocated), leaving `out` partly unwritten.
    pub(crate) fn run_checked(&self, geo: &Geometry, x: ArrayView3<T>, bias: Option<ArrayView1<T>>, out: &mut [MaybeUninit<T>]) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        if geo.in_per_group() == 0 {
            // No input channels: every output is an empty sum plus its bias. The kernels
            // assume at least one channel to address.
            for (index, value) in out.iter_mut().enumerate() {
                let o = match geo.data_format {
                    DataFormat::ChannelsLast => index % geo.filters,
                    DataFormat::ChannelsFirst => (index / geo.out_steps) % geo.filters,
                };
                value.write(bias.map_or(T::zero(), |b| b[o]));
            }
            return Ok(());
        }
        crate::kernel::supervised(|| self.run(geo, x, bias, out))
    }

    /// Writes every element of `out`.
    fn run(&self, geo: &Geometry, x: ArrayView3<T>, bias: Option<ArrayView1<T>>, out: &mut [MaybeUninit<T>]) {
        // Kernels index (batch, steps, channels) whatever the caller's layout.
        let x = match geo.data_format {
            DataFormat::ChannelsLast => x,
            DataFormat::ChannelsFirst => x.permuted_axes([0, 2, 1]),
        };
        let parallel = self.options.parallel;
        if let Some(weights) = self.fft_weights(geo, &x) {
            return fft::run(geo, x, &weights, bias, self.options.simd, parallel, out);
        }
        match &self.packed {
            Packed::Gemm(weights, mk) => gemm::run(geo, x, weights, bias, *mk, self.options.simd, parallel, out),
            Packed::Depthwise(weights) => depthwise::run(geo, x, weights, bias, self.options.simd, parallel, out),
            Packed::Reference(kernel) => reference_into(geo, x, kernel.view(), bias, out),
        }
    }
}

impl<T: Element> PreparedKernel<T> {
    /// The kernel spectra when the FFT path applies to this call: stride 1, cheaper than the
    /// direct sum (or forced), spectra of bounded size, and only finite values, since a NaN or
    /// inf would spread over a whole FFT block instead of the outputs that read it.
    fn fft_weights(&self, geo: &Geometry, x: &ArrayView3<T>) -> Option<Arc<FftWeights<T>>> {
        let long = self.long_kernel.as_ref()?;
        let forced = self.options.algorithm == Algorithm::Fft;
        let span = geo.halo() + 1;
        let spectra_bytes = (fft::fft_len(span) / 2 + 1)
            .saturating_mul(geo.filters)
            .saturating_mul(geo.in_per_group())
            .saturating_mul(2 * std::mem::size_of::<T>());
        let eligible = geo.strides == 1
            && geo.out_steps > 0
            && span <= geo.steps.max(1) * 4
            && spectra_bytes <= FFT_MAX_SPECTRA_BYTES
            && (forced || fft::relative_cost::<T>(geo, self.one_call) < fft::MAX_RELATIVE_COST);
        if !eligible || !long.finite || !all_finite(x) {
            return None;
        }
        long.spectra(self.groups, geo.dilation_rate, self.options.parallel)
    }
}

/// True when no value is NaN or infinite. A contiguous input is checked a chunk at a time
/// without an early exit inside the chunk, which lets the check vectorise.
fn all_finite<T: Element>(x: &ArrayView3<T>) -> bool {
    match x.as_slice_memory_order() {
        Some(values) => values.chunks(4096).all(|chunk| chunk.iter().fold(true, |finite, v| finite & v.is_finite())),
        None => x.iter().all(|v| v.is_finite()),
    }
}

fn dims<T>(a: &ArrayView3<T>) -> [usize; 3] {
    let (p, q, r) = a.dim();
    [p, q, r]
}

/// A new buffer of `len` elements filled by `fill`, which must write every element.
/// Skipping the zero fill saves a full pass over large outputs.
pub(crate) fn compute_new<T: Element>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Result<Vec<T>> {
    try_compute_new(len, |out| {
        fill(out);
        Ok(())
    })
}

/// [`try_compute_new`] into `recycled` when given: a buffer of at least `len` elements,
/// whatever they hold, that saves the page faults of a fresh allocation.
pub(crate) fn try_compute_in<T: Element>(
    recycled: Option<Vec<T>>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<T>]) -> Result<()>,
) -> Result<Vec<T>> {
    match recycled {
        Some(mut data) if data.len() >= len => {
            data.truncate(len);
            // SAFETY: `MaybeUninit<T>` has the layout of `T`, and `fill` writes only initialised
            // values (the kernels' contract), so `data` stays initialised.
            let out = unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<MaybeUninit<T>>(), len) };
            fill(out)?;
            Ok(data)
        }
        _ => try_compute_new(len, fill),
    }
}

/// [`compute_new`] with a `fill` that may stop early; then the partly written buffer is
/// dropped unread.
pub(crate) fn try_compute_new<T: Element>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>]) -> Result<()>) -> Result<Vec<T>> {
    let mut data: Vec<MaybeUninit<T>> = Vec::new();
    data.try_reserve_exact(len)
        .map_err(|_| ConvError::TooLarge(format!("cannot allocate {len} output elements")))?;
    // SAFETY: the capacity is `len`, and `MaybeUninit` needs no initialisation.
    unsafe { data.set_len(len) };
    fill(&mut data)?;
    let mut data = std::mem::ManuallyDrop::new(data);
    // SAFETY: `fill` initialised every element (the kernels' contract); same allocation,
    // length and capacity, and `MaybeUninit<T>` has the layout of `T`.
    Ok(unsafe { Vec::from_raw_parts(data.as_mut_ptr().cast::<T>(), len, data.capacity()) })
}

/// Refuses a size the allocator would not give now, so that code allocating it infallibly
/// does not abort. The probe only reserves address space: no page is touched.
pub(crate) fn ensure_allocatable<T>(len: usize, what: &str) -> Result<()> {
    let mut probe: Vec<T> = Vec::new();
    probe
        .try_reserve_exact(len)
        .map_err(|_| ConvError::TooLarge(format!("cannot allocate a {what} of {len} elements")))
}

/// [`try_zeroed`] in `recycled` when it has at least `len` elements.
pub(crate) fn try_zeroed_in<T: Element>(recycled: Option<Vec<T>>, len: usize) -> Result<Vec<T>> {
    match recycled {
        Some(mut data) if data.len() >= len => {
            data.truncate(len);
            data.fill(T::zero());
            Ok(data)
        }
        _ => try_zeroed(len),
    }
}

/// A zeroed buffer, or an error instead of the abort a failed allocation would cause.
pub(crate) fn try_zeroed<T: Element>(len: usize) -> Result<Vec<T>> {
    let mut data = Vec::new();
    data.try_reserve_exact(len)
        .map_err(|_| ConvError::TooLarge(format!("cannot allocate {len} output elements")))?;
    data.resize(len, T::zero());
    Ok(data)
}
