//! Every algorithm, instruction set and threading choice against `conv1d_reference`, on
//! small arrays of small integers (so every sum is exact and results must be bitwise
//! equal), in any memory layout; and arbitrary, even absurd, shapes and parameters, which
//! must give `Ok` or `Err`, never a panic.

#![no_main]

use conv1d_rs::{
    conv1d_into, conv1d_reference, conv1d_with, effective_kernel_size, output_length, padding_amounts, with_cancel,
    Algorithm, CancelToken, ComputeOptions, Conv1dParams, ConvError, DataFormat, Element, Geometry, Padding,
    PreparedKernel, Simd,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use ndarray::{s, Array1, Array3, ArrayView1, ArrayView3, ShapeBuilder};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.int_in_range(0..=3u8) {
        Ok(0) => absurd(&mut u),
        Ok(1) => small::<f64>(&mut u),
        _ => small::<f32>(&mut u),
    };
});

/// Elements that allocations in this target stay under: libFuzzer and ASan report a large
/// allocation as a crash even where the library would refuse it cleanly.
const MAX_ELEMENTS: usize = 1 << 16;

const ALGORITHMS: [Algorithm; 5] = [Algorithm::Auto, Algorithm::Gemm, Algorithm::Depthwise, Algorithm::Fft, Algorithm::Reference];

/// Small shapes, mostly sensible parameters, sometimes huge strides or dilation.
fn small<T: Element>(u: &mut Unstructured) -> Result<()> {
    let batch = u.int_in_range(0..=3usize)?;
    let steps = u.int_in_range(0..=40usize)?;
    let groups = u.int_in_range(1..=4usize)?;
    let depthwise = u.ratio(1, 4)?;
    let cg = if depthwise { 1 } else { u.int_in_range(0..=4usize)? };
    let fg = if depthwise { 1 } else { u.int_in_range(0..=5usize)? };
    let kernel_size = u.int_in_range(0..=7usize)?;
    // Now and then a kernel or bias that does not fit, or another group count.
    let kernel_cg = if u.ratio(1, 16)? { u.int_in_range(0..=5usize)? } else { cg };
    let bias_len = match u.int_in_range(0..=15u8)? {
        0 => Some(u.int_in_range(0..=8usize)?),
        1..=7 => Some(groups * fg),
        _ => None,
    };
    let params = Conv1dParams {
        strides: param(u)?,
        dilation_rate: param(u)?,
        groups: if u.ratio(1, 16)? { u.int_in_range(0..=5usize)? } else { groups },
        padding: *u.choose(&[Padding::Valid, Padding::Same, Padding::Causal])?,
        data_format: *u.choose(&[DataFormat::ChannelsLast, DataFormat::ChannelsFirst])?,
    };
    let channels = groups * cg;
    let x_shape = match params.data_format {
        DataFormat::ChannelsLast => [batch, steps, channels],
        DataFormat::ChannelsFirst => [batch, channels, steps],
    };
    let x_owner = layout_array::<T>(u, x_shape, true)?;
    let kernel = Array3::from_shape_vec((kernel_size, kernel_cg, groups * fg), values(u, kernel_size * kernel_cg * groups * fg, false)?)
        .expect("shape matches");
    let bias = bias_len.map(|n| values(u, n, false)).transpose()?.map(Array1::from_vec);
    let x = x_owner.view();
    check_all(x, kernel.view(), bias.as_ref().map(|b| b.view()), &params);
    Ok(())
}

/// Mostly 1..=5; sometimes anything up to `usize::MAX`.
fn param(u: &mut Unstructured) -> Result<usize> {
    Ok(match u.int_in_range(0..=15u8)? {
        0 => u.arbitrary::<usize>()?,
        1 => 1usize << u.int_in_range(0..=63u32)?,
        _ => u.int_in_range(1..=5usize)?,
    })
}

/// Arbitrary shapes and parameters: the size arithmetic must not panic, and when the call
/// is small enough to run here (a broadcast input may be huge but costs nothing), it runs.
fn absurd(u: &mut Unstructured) -> Result<()> {
    let dim = |u: &mut Unstructured| -> Result<usize> {
        Ok(match u.int_in_range(0..=3u8)? {
            0 => u.arbitrary::<usize>()?,
            1 => 1usize << u.int_in_range(0..=63u32)?,
            _ => u.int_in_range(0..=9usize)?,
        })
    };
    let x_shape = [dim(u)?, dim(u)?, dim(u)?];
    let kernel_shape = [dim(u)?, dim(u)?, dim(u)?];
    let bias_len = if u.arbitrary()? { Some(dim(u)?) } else { None };
    let params = Conv1dParams {
        strides: dim(u)?,
        dilation_rate: dim(u)?,
        groups: dim(u)?,
        padding: *u.choose(&[Padding::Valid, Padding::Same, Padding::Causal])?,
        data_format: *u.choose(&[DataFormat::ChannelsLast, DataFormat::ChannelsFirst])?,
    };
    let [k, s, d] = [kernel_shape[0], params.strides, params.dilation_rate];
    let steps = x_shape[1];
    let _ = effective_kernel_size(k, d);
    let _ = output_length(steps, k, s, d, params.padding);
    let _ = padding_amounts(steps, k, s, d, params.padding);
    let _ = params.validate();
    let Ok(geometry) = Geometry::new(x_shape, kernel_shape, bias_len, &params) else {
        return Ok(());
    };
    let kernel_elements = kernel_shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
    let output = geometry.output_len();
    // Only the reference's cost matters here: it loops over every tap of every output.
    let work = output.ok().and_then(|n| n.checked_mul(kernel_shape[0].max(1))?.checked_mul(kernel_shape[1].max(1)));
    if kernel_elements.is_none_or(|n| n > MAX_ELEMENTS) || work.is_none_or(|n| n > MAX_ELEMENTS * 16) {
        return Ok(());
    }
    // The input is one row broadcast to its (possibly huge) shape.
    let channels = match params.data_format {
        DataFormat::ChannelsLast => x_shape[2],
        DataFormat::ChannelsFirst => x_shape[1],
    };
    if channels > MAX_ELEMENTS {
        return Ok(());
    }
    let row_shape = match params.data_format {
        DataFormat::ChannelsLast => (1, 1, channels),
        DataFormat::ChannelsFirst => (1, channels, 1),
    };
    let row = Array3::from_shape_vec(row_shape, values::<f32>(u, channels, true)?).expect("shape matches");
    let Some(x) = row.broadcast(x_shape) else {
        return Ok(());
    };
    let kernel = Array3::from_shape_vec(
        (kernel_shape[0], kernel_shape[1], kernel_shape[2]),
        values(u, kernel_elements.unwrap_or(0), false)?,
    )
    .expect("shape matches");
    let bias = match bias_len {
        Some(n) if n <= MAX_ELEMENTS => Some(Array1::from_vec(values(u, n, false)?)),
        Some(_) => return Ok(()),
        None => None,
    };
    check_all(x, kernel.view(), bias.as_ref().map(|b| b.view()), &params);
    Ok(())
}

/// Small integers in -4..=4, and NaN or infinities when `special` (input only: the reference
/// skips padded taps, while the fast paths multiply them by zero, which differs for an
/// infinite weight exactly as Keras's zero padding does).
fn values<T: Element>(u: &mut Unstructured, n: usize, special: bool) -> Result<Vec<T>> {
    let allow_special = special && u.ratio(1, 8)?;
    (0..n)
        .map(|_| {
            let byte = u.arbitrary::<u8>()?;
            Ok(match byte {
                253 if allow_special => T::nan(),
                254 if allow_special => T::infinity(),
                255 if allow_special => T::neg_infinity(),
                _ => T::from(i32::from(byte % 9) - 4).expect("small integer"),
            })
        })
        .collect()
}

/// An input array of `shape` in a layout picked from the fuzz input.
enum Layout<T> {
    Standard(Array3<T>),
    Fortran(Array3<T>),
    /// Stored with one axis reversed and viewed back: that axis has a negative stride.
    Reversed(Array3<T>, usize),
    /// Every step the same row: a zero stride.
    Broadcast(Array3<T>, [usize; 3]),
    /// Every other element of a larger array.
    Strided(Array3<T>),
}

fn layout_array<T: Element>(u: &mut Unstructured, shape: [usize; 3], special: bool) -> Result<Layout<T>> {
    let n = shape.iter().product();
    let dims = (shape[0], shape[1], shape[2]);
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Layout::Fortran(Array3::from_shape_vec(dims.f(), values(u, n, special)?).expect("shape matches")),
        1 => Layout::Reversed(Array3::from_shape_vec(dims, values(u, n, special)?).expect("shape matches"), u.int_in_range(0..=2usize)?),
        2 => {
            let row = (shape[0], 1, shape[2]);
            Layout::Broadcast(Array3::from_shape_vec(row, values(u, shape[0] * shape[2], special)?).expect("shape matches"), shape)
        }
        3 => {
            let big = (shape[0], shape[1] * 2, shape[2]);
            Layout::Strided(Array3::from_shape_vec(big, values(u, n * 2, special)?).expect("shape matches"))
        }
        _ => Layout::Standard(Array3::from_shape_vec(dims, values(u, n, special)?).expect("shape matches")),
    })
}

impl<T: Element> Layout<T> {
    fn view(&self) -> ArrayView3<'_, T> {
        match self {
            Layout::Standard(a) | Layout::Fortran(a) => a.view(),
            Layout::Reversed(a, 0) => a.slice(s![..;-1, .., ..]),
            Layout::Reversed(a, 1) => a.slice(s![.., ..;-1, ..]),
            Layout::Reversed(a, _) => a.slice(s![.., .., ..;-1]),
            Layout::Broadcast(a, shape) => a.broadcast(*shape).expect("broadcastable"),
            Layout::Strided(a) => a.slice(s![.., ..;2, ..]),
        }
    }
}

/// Equal, or both NaN.
fn same<T: Element>(a: &Array3<T>, b: &Array3<T>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(p, q)| p == q || (p.is_nan() && q.is_nan()))
}

/// FFT rounding: small against the largest possible magnitude of a sum.
fn close<T: Element>(a: &Array3<T>, b: &Array3<T>, terms: usize) -> bool {
    let tol = T::epsilon() * T::from(64 * (16 * terms + 8)).expect("small");
    a.shape() == b.shape()
        && a.iter().zip(b.iter()).all(|(p, q)| p == q || (p.is_nan() && q.is_nan()) || (*p - *q).abs() <= tol)
}

fn check_all<T: Element>(x: ArrayView3<T>, kernel: ArrayView3<T>, bias: Option<ArrayView1<T>>, params: &Conv1dParams) {
    if std::env::var_os("CONV1D_FUZZ_DEBUG").is_some() {
        eprintln!("x {:?} strides {:?}, kernel {:?}, bias {:?}, {params:?}", x.shape(), x.strides(), kernel.shape(), bias.map(|b| b.len()));
    }
    let reference = conv1d_reference(x, kernel, bias, params);
    let terms = kernel.shape()[0] * kernel.shape()[1];
    for algorithm in ALGORITHMS {
        for simd in [Simd::Auto, Simd::Portable] {
            for parallel in [false, true] {
                let options = ComputeOptions { algorithm, simd, parallel };
                let result = conv1d_with(x, kernel, bias, params, &options);
                match (&reference, &result) {
                    (Ok(expected), Ok(actual)) => {
                        // Auto may choose the FFT, whose rounding differs; the others are exact.
                        let ok = match algorithm {
                            Algorithm::Auto | Algorithm::Fft => close(expected, actual, terms),
                            _ => same(expected, actual),
                        };
                        assert!(ok, "{options:?} differs from the reference:\n{expected:?}\n{actual:?}");
                    }
                    (Err(_), Err(_)) => {}
                    (Ok(_), Err(ConvError::InvalidParameter { name: "algorithm", .. })) if algorithm == Algorithm::Depthwise => {}
                    (expected, actual) => panic!("{options:?}: reference gave {expected:?}, the kernel {actual:?}"),
                }
            }
        }
    }
    let Ok(expected) = reference else {
        let _ = PreparedKernel::new(kernel, params.groups, &ComputeOptions::default()).map(|p| p.forward(x, bias, params));
        return;
    };
    // Into a caller's buffer, in standard and in Fortran layout.
    let shape = expected.raw_dim();
    let mut out = Array3::from_elem(shape, T::nan());
    conv1d_into(x, kernel, bias, params, out.view_mut()).expect("same call as the reference");
    assert!(close(&expected, &out, terms), "conv1d_into differs");
    let mut out = Array3::from_elem(shape.f(), T::nan());
    conv1d_into(x, kernel, bias, params, out.view_mut()).expect("same call as the reference");
    assert!(close(&expected, &out, terms), "conv1d_into (Fortran) differs");
    // A cancelled token stops the call, unless there is nothing to compute.
    let token = CancelToken::new();
    token.cancel();
    match with_cancel(&token, || conv1d_with(x, kernel, bias, params, &ComputeOptions::default())) {
        Err(ConvError::Cancelled) => {}
        Ok(actual) => assert!(close(&expected, &actual, terms), "an uncancellable call differs"),
        Err(other) => panic!("cancelled call gave {other:?}"),
    }
}
