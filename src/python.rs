//! The Python extension module `conv1d_rs._core`: the only code that names pyo3 or numpy.
//! Argument normalisation and Keras semantics live in the Python package; this module
//! converts arrays, releases the GIL around the compute and maps errors to exceptions.

use crate::{with_cancel, Algorithm, CancelToken, ComputeOptions, Conv1dParams, ConvError, DataFormat, Element, Padding, PreparedKernel, Simd};
use numpy::{IntoPyArray, PyArray, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray3, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use crate::buffer_pool::BufferPool;
use crate::kernel::aligned::{line_offset, CACHE_LINE};
use ndarray::ArrayView3;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

impl From<ConvError> for PyErr {
    fn from(err: ConvError) -> PyErr {
        match err {
            ConvError::TooLarge(_) => PyMemoryError::new_err(err.to_string()),
            ConvError::Overflow(_) => PyOverflowError::new_err(err.to_string()),
            // Only `compute` cancels, and it raises the interrupt that caused it instead.
            ConvError::Cancelled => PyRuntimeError::new_err(err.to_string()),
            _ => PyValueError::new_err(err.to_string()),
        }
    }
}

fn parse_options(algorithm: &str, simd: &str, parallel: bool) -> PyResult<ComputeOptions> {
    let algorithm = match algorithm {
        "auto" => Algorithm::Auto,
        "gemm" => Algorithm::Gemm,
        "depthwise" => Algorithm::Depthwise,
        "reference" => Algorithm::Reference,
        "fft" => Algorithm::Fft,
        other => {
            return Err(PyValueError::new_err(format!(
                "algorithm must be one of 'auto', 'gemm', 'depthwise', 'fft', 'reference'; received {other:?}"
            )))
        }
    };
    let simd = match simd {
        "auto" => Simd::Auto,
        "avx2" => Simd::Avx2,
        "portable" => Simd::Portable,
        other => return Err(PyValueError::new_err(format!("simd must be 'auto', 'avx2' or 'portable'; received {other:?}"))),
    };
    Ok(ComputeOptions { algorithm, simd, parallel })
}

fn parse_params(strides: usize, padding: &str, data_format: &str, dilation_rate: usize, groups: usize) -> PyResult<Conv1dParams> {
    let params = Conv1dParams {
        strides,
        dilation_rate,
        groups,
        padding: padding.parse::<Padding>()?,
        data_format: data_format.parse::<DataFormat>()?,
    };
    params.validate()?;
    Ok(params)
}

/// Runs `f` without the GIL; a panic becomes a RuntimeError instead of crossing into Python.
fn compute<R: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<R> + Send) -> PyResult<R> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => Ok(result?),
        Err(_) => Err(panic_error()),
    }
}

fn panic_error() -> PyErr {
    PyRuntimeError::new_err("internal error in the conv1d_rs core (a Rust panic); please report it")
}

/// Multiply-adds plus outputs from which a call is worth watching for Ctrl-C: smaller calls
/// finish in well under 0.1 s, and the helper thread would cost more than it gives.
const INTERRUPTIBLE_MIN_WORK: f64 = 1e8;

/// [`compute`], and when `watch`, interruptible: `f` runs on a helper thread while this one,
/// every 50 ms, takes the GIL to run Python's signal handlers (which only run on the main
/// thread, and not while it computes). When one raises, as Ctrl-C's KeyboardInterrupt does,
/// `f` is cancelled, stops within one work item, and that exception is raised.
fn compute_interruptible<R: Send>(py: Python<'_>, watch: bool, f: impl FnOnce() -> crate::Result<R> + Send) -> PyResult<R> {
    if !watch {
        return compute(py, f);
    }
    let token = CancelToken::new();
    let job = Mutex::new(Some(f));
    let done = (Mutex::new(false), Condvar::new());
    let work = || {
        let f = job.lock().unwrap_or_else(PoisonError::into_inner).take();
        let result = catch_unwind(AssertUnwindSafe(|| f.map(|f| with_cancel(&token, f))));
        *done.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        done.1.notify_all();
        result
    };
    std::thread::scope(|scope| {
        let Ok(worker) = std::thread::Builder::new().name("conv1d_rs".into()).spawn_scoped(scope, work) else {
            // No thread to be had: compute here, uninterruptibly.
            let f = job.lock().unwrap_or_else(PoisonError::into_inner).take();
            return f.map_or_else(|| Err(panic_error()), |f| compute(py, f));
        };
        let mut interrupt = None;
        loop {
            let finished = py.detach(|| {
                let finished = done.0.lock().unwrap_or_else(PoisonError::into_inner);
                let wait = done.1.wait_timeout_while(finished, Duration::from_millis(50), |finished| !*finished);
                let (finished, _) = wait.unwrap_or_else(PoisonError::into_inner);
                *finished
            });
            if finished {
                break;
            }
            if interrupt.is_none()
                && let Err(err) = py.check_signals()
            {
                token.cancel();
                interrupt = Some(err);
            }
        }
        let result = worker.join();
        if let Some(err) = interrupt {
            return Err(err);
        }
        match result {
            Ok(Ok(Some(result))) => Ok(result?),
            _ => Err(panic_error()),
        }
    })
}

/// `a` itself when rust-numpy can view it as it is, else an aligned C-contiguous copy:
/// rust-numpy's views assume aligned data and strides that are multiples of the element
/// size (a field of a packed record array, or `as_strided`, can break both), and an empty
/// array's strides may point outside its allocation.
fn viewable<'py, T: numpy::Element, D: ndarray::Dimension>(a: Bound<'py, PyArray<T, D>>) -> PyResult<Bound<'py, PyArray<T, D>>> {
    let item = std::mem::size_of::<T>() as isize;
    if a.is_aligned() && !a.is_empty() && a.strides().iter().all(|s| s % item == 0) {
        return Ok(a);
    }
    let copy = a.py().import("numpy")?.call_method1("ascontiguousarray", (&a,))?;
    Ok(copy.cast_into::<PyArray<T, D>>()?)
}

/// A kernel packed once for one dtype.
enum Prepared {
    F32(PreparedKernel<f32>),
    F64(PreparedKernel<f64>),
}

/// A packed kernel, reused across calls. `kernel` is `(kernel_size, in_channels // groups, filters)`.
#[pyclass(name = "PreparedKernel", module = "conv1d_rs._core", frozen)]
struct PyPreparedKernel {
    prepared: Prepared,
}

fn prepare_typed<T: Element + numpy::Element>(
    py: Python<'_>,
    kernel: &Bound<'_, PyUntypedArray>,
    groups: usize,
    options: &ComputeOptions,
    one_call: bool,
) -> PyResult<PreparedKernel<T>> {
    let kernel: PyReadonlyArray3<T> = viewable(kernel.cast::<PyArray3<T>>()?.clone())?.try_readonly()?;
    let view = kernel.as_array();
    compute(py, || PreparedKernel::with_use(view, groups, options, one_call))
}

fn forward_typed<'py, T: Pooled>(
    py: Python<'py>,
    prepared: &PreparedKernel<T>,
    x: &Bound<'py, PyUntypedArray>,
    bias: Option<&Bound<'py, PyUntypedArray>>,
    params: &Conv1dParams,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let x = x.cast::<PyArray3<T>>().map_err(|_| {
        PyTypeError::new_err(format!("x must be a 3-D array of the kernel's dtype; got a {}-D {} array", x.ndim(), x.dtype()))
    })?;
    let x: PyReadonlyArray3<T> = viewable(x.clone())?.try_readonly()?;
    let bias: Option<PyReadonlyArray1<T>> = match bias {
        Some(b) => {
            let b = b.cast::<numpy::PyArray1<T>>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "bias must be a 1-D array of the kernel's dtype; got a {}-D {} array",
                    b.ndim(),
                    b.dtype()
                ))
            })?;
            Some(viewable(b.clone())?.try_readonly()?)
        }
        None => None,
    };
    let (xv, bv) = (x.as_array(), bias.as_ref().map(|b| b.as_array()));
    let geometry = prepared.geometry(dims(&xv), bv.map(|b| b.len()), params)?;
    let shape = geometry.output_shape();
    let len = geometry.output_len()?;
    let watch = geometry.macs() + len as f64 >= INTERRUPTIBLE_MIN_WORK;
    // Rows start on a cache line: the kernels' 64-byte stores (streaming ones above all) then
    // never split a line. The buffer has room to shift the array's start that far.
    let padded = len.checked_add(CACHE_LINE / std::mem::size_of::<T>()).ok_or_else(|| PyMemoryError::new_err("output too large"))?;
    // A forked child skips the pool: its lock may have been held by a thread of the parent.
    let recycled = if crate::kernel::forked_child() { None } else { T::pool().take(padded) };
    let mut start = 0;
    // Only the margins around the array are zeroed: the kernels write every element of it.
    let data = compute_interruptible(py, watch, || {
        crate::conv::try_compute_in(recycled, padded, |buffer| {
            start = line_offset(buffer.as_ptr());
            let (margin, rest) = buffer.split_at_mut(start);
            let (out, end) = rest.split_at_mut(len);
            for value in margin.iter_mut().chain(end) {
                value.write(T::zero());
            }
            prepared.run_checked(&geometry, xv, bv, out)
        })
    })?;
    Ok(pooled_array(py, data, start, shape)?.into_any().cast_into::<PyUntypedArray>()?)
}

/// A standard-layout array of `shape` over `data[start..]`, which returns `data` to the pool
/// when NumPy drops the array.
fn pooled_array<T: Pooled>(py: Python<'_>, data: Vec<T>, start: usize, shape: [usize; 3]) -> PyResult<Bound<'_, PyArray3<T>>> {
    if data.len() < start + shape.iter().product::<usize>() {
        return Err(PyValueError::new_err("internal error: output buffer shorter than its shape"));
    }
    let view = data[start..].as_ptr();
    let owner = Bound::new(py, OutputBuffer { data: T::wrap(data) })?;
    // SAFETY: the view addresses `shape` elements (checked above) of the heap block of the Vec
    // now owned by `owner`, which the array keeps alive as its base; moving the Vec into
    // `owner` did not move that block.
    Ok(unsafe {
        let view = ArrayView3::from_shape_ptr(shape, view);
        PyArray3::borrow_from_array(&view, owner.into_any())
    })
}

fn dims<T>(a: &ArrayView3<'_, T>) -> [usize; 3] {
    let (p, q, r) = a.dim();
    [p, q, r]
}

static POOL_F32: BufferPool<f32> = BufferPool::new();
static POOL_F64: BufferPool<f64> = BufferPool::new();

/// The element types whose outputs are pooled.
trait Pooled: Element + numpy::Element {
    fn pool() -> &'static BufferPool<Self>;
    fn wrap(data: Vec<Self>) -> PooledData;
}

impl Pooled for f32 {
    fn pool() -> &'static BufferPool<f32> {
        &POOL_F32
    }
    fn wrap(data: Vec<f32>) -> PooledData {
        PooledData::F32(data)
    }
}

impl Pooled for f64 {
    fn pool() -> &'static BufferPool<f64> {
        &POOL_F64
    }
    fn wrap(data: Vec<f64>) -> PooledData {
        PooledData::F64(data)
    }
}

enum PooledData {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Owns an output array's memory; when NumPy drops the array, the memory returns to the pool.
#[pyclass(module = "conv1d_rs._core", frozen)]
struct OutputBuffer {
    data: PooledData,
}

impl Drop for OutputBuffer {
    fn drop(&mut self) {
        if crate::kernel::forked_child() {
            return;
        }
        match std::mem::replace(&mut self.data, PooledData::F32(Vec::new())) {
            PooledData::F32(v) => POOL_F32.give(v),
            PooledData::F64(v) => POOL_F64.give(v),
        }
    }
}

/// Frees the idle output buffers kept for reuse.
#[pyfunction]
fn release_buffers() {
    POOL_F32.clear();
    POOL_F64.clear();
}

#[pymethods]
impl PyPreparedKernel {
    #[new]
    #[pyo3(signature = (kernel, groups=1, algorithm="auto", simd="auto", parallel=true, one_call=false))]
    fn new(
        py: Python<'_>,
        kernel: &Bound<'_, PyUntypedArray>,
        groups: usize,
        algorithm: &str,
        simd: &str,
        parallel: bool,
        one_call: bool,
    ) -> PyResult<Self> {
        let options = parse_options(algorithm, simd, parallel)?;
        let prepared = if kernel.ndim() != 3 {
            return Err(PyValueError::new_err(format!("kernel must be 3-D (kernel_size, in_channels // groups, filters); got shape {:?}", kernel.shape())));
        } else if kernel.cast::<PyArray3<f32>>().is_ok() {
            Prepared::F32(prepare_typed::<f32>(py, kernel, groups, &options, one_call)?)
        } else if kernel.cast::<PyArray3<f64>>().is_ok() {
            Prepared::F64(prepare_typed::<f64>(py, kernel, groups, &options, one_call)?)
        } else {
            return Err(PyTypeError::new_err(format!("kernel must be float32 or float64; got {}", kernel.dtype())));
        };
        Ok(PyPreparedKernel { prepared })
    }

    /// The algorithm chosen for this kernel: "gemm", "depthwise" or "reference".
    #[getter]
    fn algorithm(&self) -> &'static str {
        let algorithm = match &self.prepared {
            Prepared::F32(p) => p.algorithm(),
            Prepared::F64(p) => p.algorithm(),
        };
        match algorithm {
            Algorithm::Depthwise => "depthwise",
            Algorithm::Reference => "reference",
            Algorithm::Fft => "fft",
            _ => "gemm",
        }
    }

    /// Convolves `x` (same dtype as the kernel) and adds `bias`, returning a new array.
    #[pyo3(signature = (x, bias=None, strides=1, padding="valid", data_format="channels_last", dilation_rate=1, groups=1))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyUntypedArray>,
        bias: Option<&Bound<'py, PyUntypedArray>>,
        strides: usize,
        padding: &str,
        data_format: &str,
        dilation_rate: usize,
        groups: usize,
    ) -> PyResult<Bound<'py, PyUntypedArray>> {
        let params = parse_params(strides, padding, data_format, dilation_rate, groups)?;
        match &self.prepared {
            Prepared::F32(p) => forward_typed(py, p, x, bias, &params),
            Prepared::F64(p) => forward_typed(py, p, x, bias, &params),
        }
    }
}

type GradientArrays<'py> = (Bound<'py, PyUntypedArray>, Bound<'py, PyUntypedArray>, Option<Bound<'py, PyUntypedArray>>);

fn backward_typed<'py, T: Pooled>(
    py: Python<'py>,
    arrays: [&Bound<'py, PyUntypedArray>; 3],
    params: &Conv1dParams,
    use_bias: bool,
    options: &ComputeOptions,
) -> PyResult<GradientArrays<'py>> {
    let [x, kernel, dy] = arrays.map(|a| {
        a.cast::<PyArray3<T>>()
            .map_err(|_| PyTypeError::new_err(format!("x, kernel and dy must be 3-D arrays of one float dtype; got a {}-D {} array", a.ndim(), a.dtype())))
            .and_then(|a| Ok(viewable(a.clone())?.try_readonly()?))
    });
    let (x, kernel, dy): (PyReadonlyArray3<T>, PyReadonlyArray3<T>, PyReadonlyArray3<T>) = (x?, kernel?, dy?);
    let (xv, kv, dyv) = (x.as_array(), kernel.as_array(), dy.as_array());
    // Multiply-adds of dx and dkernel: each output element meets kernel_size * in_per_group inputs twice.
    let (taps, in_per_group, _) = kv.dim();
    let work = 2.0 * dyv.len() as f64 * (taps * in_per_group) as f64;
    let watch = work >= INTERRUPTIBLE_MIN_WORK;
    // dx is as large as x: reuse a dropped output's memory, as the forward pass does.
    let recycled = if crate::kernel::forked_child() { None } else { T::pool().take(xv.len()) };
    let grads = compute_interruptible(py, watch, || {
        crate::backward::conv1d_backward_recycling(xv, kv, dyv, params, use_bias, options, recycled)
    })?;
    let as_any = |a: Bound<'py, PyArray3<T>>| a.into_any().cast_into::<PyUntypedArray>().map_err(PyErr::from);
    let dbias = match grads.dbias {
        Some(b) => Some(b.into_pyarray(py).into_any().cast_into::<PyUntypedArray>()?),
        None => None,
    };
    let (p, q, r) = grads.dx.dim();
    let (dx, offset) = grads.dx.into_raw_vec_and_offset();
    let dx = pooled_array(py, dx, offset.unwrap_or(0), [p, q, r])?;
    Ok((as_any(dx)?, as_any(grads.dkernel.into_pyarray(py))?, dbias))
}

/// Gradients of `sum(conv1d(x, kernel, bias) * dy)`: `(dx, dkernel, dbias or None)`.
/// `x`, `kernel` and `dy` share one float dtype.
#[pyfunction]
#[pyo3(signature = (x, kernel, dy, strides=1, padding="valid", data_format="channels_last", dilation_rate=1, groups=1, use_bias=true, algorithm="auto", simd="auto", parallel=true))]
fn conv1d_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyUntypedArray>,
    kernel: &Bound<'py, PyUntypedArray>,
    dy: &Bound<'py, PyUntypedArray>,
    strides: usize,
    padding: &str,
    data_format: &str,
    dilation_rate: usize,
    groups: usize,
    use_bias: bool,
    algorithm: &str,
    simd: &str,
    parallel: bool,
) -> PyResult<GradientArrays<'py>> {
    let params = parse_params(strides, padding, data_format, dilation_rate, groups)?;
    let options = parse_options(algorithm, simd, parallel)?;
    if kernel.cast::<PyArray3<f32>>().is_ok() {
        backward_typed::<f32>(py, [x, kernel, dy], &params, use_bias, &options)
    } else if kernel.cast::<PyArray3<f64>>().is_ok() {
        backward_typed::<f64>(py, [x, kernel, dy], &params, use_bias, &options)
    } else {
        Err(PyTypeError::new_err(format!("kernel must be a 3-D float32 or float64 array; got a {}-D {} array", kernel.ndim(), kernel.dtype())))
    }
}

/// True when the CPU has AVX2 and FMA, so the SIMD kernels run.
#[pyfunction]
fn has_avx2_fma() -> bool {
    crate::kernel::has_avx2_fma()
}

/// True when the CPU also has AVX-512 (F and DQ), so GEMM calls whose groups have whole
/// blocks of 32 float32 (16 float64) filters use zmm tiles.
#[pyfunction]
fn has_avx512() -> bool {
    crate::kernel::has_avx512()
}

/// Threads in the rayon pool (set by RAYON_NUM_THREADS before the first call); 1 in a
/// process forked after the pool started, which computes on its calling thread.
#[pyfunction]
fn num_threads() -> usize {
    crate::kernel::pool_threads()
}

/// GFLOP/s of a plain AVX2 FMA loop on `threads` threads for about `seconds` (0 without AVX2/FMA).
#[pyfunction]
#[pyo3(signature = (seconds=0.3, threads=None))]
fn fma_peak_gflops(py: Python<'_>, seconds: f64, threads: Option<usize>) -> f64 {
    let threads = threads.unwrap_or_else(crate::kernel::pool_threads);
    py.detach(|| crate::kernel::peak::fma_peak_gflops(seconds, threads))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPreparedKernel>()?;
    m.add_function(wrap_pyfunction!(has_avx2_fma, m)?)?;
    m.add_function(wrap_pyfunction!(has_avx512, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(fma_peak_gflops, m)?)?;
    m.add_function(wrap_pyfunction!(release_buffers, m)?)?;
    m.add_function(wrap_pyfunction!(conv1d_backward, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
