//! The backward pass: every fast path against the reference loops, thread settings against
//! each other bit for bit, and the reference against finite differences of the forward pass.

use conv1d_rs::{
    conv1d_backward, conv1d_backward_reference, conv1d_backward_with, conv1d_reference, with_cancel, Algorithm,
    CancelToken, ComputeOptions, Conv1dParams, ConvError, DataFormat, Element, Gradients, Padding, Simd,
};
use ndarray::{Array1, Array3};
use proptest::prelude::*;

mod common;
use common::{case, input_and_kernel, integers, xorshift, Case};

/// Uniform values in [-1, 1): sums round, so any change of summation order shows.
fn reals(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed | 1;
    (0..len).map(|_| (xorshift(&mut state) >> 11) as f64 / (1u64 << 52) as f64 - 1.0).collect()
}

/// Input, kernel and output gradient of a case; `None` when the forward call is refused.
fn arrays(c: &Case, fill: fn(usize, u64) -> Vec<f64>) -> (Array3<f64>, Array3<f64>, Option<Array3<f64>>) {
    let (x, kernel) = input_and_kernel(c, fill);
    let dy = conv1d_reference(x.view(), kernel.view(), None, &c.params)
        .ok()
        .map(|y| Array3::from_shape_vec(y.raw_dim(), fill(y.len(), c.seed ^ 0x51)).unwrap());
    (x, kernel, dy)
}

fn cast<T: Element>(a: &Array3<f64>) -> Array3<T> {
    a.mapv(|v| T::from(v).unwrap())
}

fn options() -> Vec<ComputeOptions> {
    let mut all = Vec::new();
    for algorithm in [Algorithm::Auto, Algorithm::Gemm, Algorithm::Depthwise] {
        for simd in [Simd::Auto, Simd::Avx2, Simd::Portable] {
            for parallel in [false, true] {
                all.push(ComputeOptions { algorithm, simd, parallel });
            }
        }
    }
    all
}

fn check<T: Element>(c: &Case) -> Result<(), TestCaseError> {
    let (x, kernel, dy) = arrays(c, integers);
    let (x, kernel) = (cast::<T>(&x), cast::<T>(&kernel));
    let Some(dy) = dy.map(|dy| cast::<T>(&dy)) else {
        // The forward pass refuses these shapes; so must the backward pass, with the same error.
        let forward = conv1d_reference(x.view(), kernel.view(), None, &c.params).unwrap_err();
        let wrong = Array3::<T>::zeros((1, 1, 1));
        let backward = conv1d_backward(x.view(), kernel.view(), wrong.view(), &c.params, c.use_bias).unwrap_err();
        prop_assert_eq!(forward, backward);
        return Ok(());
    };
    let expected = conv1d_backward_reference(x.view(), kernel.view(), dy.view(), &c.params, c.use_bias).unwrap();
    prop_assert_eq!(expected.dx.dim(), x.dim());
    prop_assert_eq!(expected.dkernel.dim(), kernel.dim());
    prop_assert_eq!(expected.dbias.is_some(), c.use_bias);
    let depthwise = c.in_per_group == 1 && c.filters_per_group == 1;
    for options in options() {
        let got = conv1d_backward_with(x.view(), kernel.view(), dy.view(), &c.params, c.use_bias, &options);
        if options.algorithm == Algorithm::Depthwise && !depthwise {
            let refused = matches!(got, Err(ConvError::InvalidParameter { name: "algorithm", .. }));
            prop_assert!(refused, "depthwise accepted {:?}", c);
            continue;
        }
        let got = got.unwrap();
        if options.algorithm == Algorithm::Auto && c.kernel_size >= 16 {
            // dx of a long kernel may take the forward FFT path, which rounds differently
            // from a direct sum; the data are small integers, so the exact sums are known.
            let close = expected.dx.iter().zip(got.dx.iter()).all(|(&e, &g)| {
                let (e, g) = (e.to_f64().unwrap(), g.to_f64().unwrap());
                (e - g).abs() <= 1e-9 * (1.0 + e.abs())
            });
            prop_assert!(close, "dx {:?} {:?}", options, c);
            prop_assert_eq!(&expected.dkernel, &got.dkernel, "{:?} {:?}", options, c);
            prop_assert_eq!(&expected.dbias, &got.dbias, "{:?} {:?}", options, c);
        } else {
            prop_assert_eq!(&expected, &got, "{:?} {:?}", options, c);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(250))]
    #[test]
    fn f64_gradients_match_reference(c in case(1..7)) {
        check::<f64>(&c)?;
    }

    #[test]
    fn f32_gradients_match_reference(c in case(1..7)) {
        check::<f32>(&c)?;
    }
}

/// Shapes that reach the edges of the blocked loops: channel and filter tails, many row tiles,
/// long sweeps, both dx formulations, the depthwise path.
fn larger_cases() -> Vec<Case> {
    let p = Conv1dParams::new;
    vec![
        Case::new(3, 300, 1, 37, 45, 5, p().padding(Padding::Same).dilation_rate(2)),
        Case::new(2, 200, 1, 19, 33, 9, p().strides(3).data_format(DataFormat::ChannelsFirst)),
        Case::new(2, 260, 1, 1, 40, 31, p()),
        Case::new(2, 301, 1, 2, 23, 10, p().strides(5).padding(Padding::Causal)),
        // Taps x channels within the filters: dx gathered from one GEMM over the kernel's columns.
        Case::new(3, 2003, 1, 1, 48, 10, p().strides(5)),
        Case::new(3, 1200, 1, 3, 40, 4, p().strides(3).dilation_rate(2).padding(Padding::Same).data_format(DataFormat::ChannelsFirst)),
        Case::new(2, 150, 4, 8, 12, 3, p().padding(Padding::Same).strides(2).dilation_rate(3)),
        Case::new(3, 257, 40, 1, 1, 7, p().groups(40).padding(Padding::Same)),
        Case::new(
            2,
            130,
            24,
            1,
            1,
            5,
            p().groups(24).strides(2).dilation_rate(2).data_format(DataFormat::ChannelsFirst),
        ),
        Case::new(1, 700, 1, 16, 16, 63, p().padding(Padding::Same)),
        Case::new(2, 90, 3, 5, 2, 4, p().groups(3).padding(Padding::Causal).dilation_rate(4)),
        // Wide rows of x and dy: both are packed per chunk of steps, x once for all taps.
        Case::new(2, 50, 1, 130, 128, 3, p().padding(Padding::Same).dilation_rate(2)),
        Case::new(2, 60, 2, 70, 64, 3, p().padding(Padding::Causal).strides(2).data_format(DataFormat::ChannelsFirst)),
        // Taps far apart: each tap of x gets a panel of its own.
        Case::new(2, 500, 1, 130, 64, 2, p().padding(Padding::Same).dilation_rate(200)),
        // Long reductions onto small results: dkernel and dbias are summed in parts, and the
        // parts cut across batch items.
        Case::new(3, 3000, 1, 4, 8, 3, p().padding(Padding::Same)),
        Case::new(2, 4500, 2, 3, 5, 2, p().padding(Padding::Causal).dilation_rate(3).strides(2)),
        // Kernels far wider than the input: windows of padding are bounded by the input.
        Case::new(2, 9, 1, 3, 20, 7, p().padding(Padding::Same).dilation_rate(40)),
        Case::new(1, 30, 1, 64, 16, 5, p().padding(Padding::Causal).dilation_rate(1000)),
    ]
    .into_iter()
    .map(|mut c| {
        c.params = c.params.groups(c.groups);
        c
    })
    .collect()
}

#[test]
fn larger_shapes_match_reference() {
    for c in larger_cases() {
        check::<f32>(&c).unwrap();
        check::<f64>(&Case { seed: 5, ..c }).unwrap();
    }
}

fn assert_bitwise<T: Element>(a: &Gradients<T>, b: &Gradients<T>, what: &str) {
    let bits = |g: &Gradients<T>| -> Vec<u64> {
        let dbias = g.dbias.iter().flat_map(|b| b.iter());
        g.dx.iter().chain(g.dkernel.iter()).chain(dbias).map(|v| v.to_f64().unwrap().to_bits()).collect()
    };
    assert!(bits(a) == bits(b), "{what}: results differ");
}

fn determinism<T: Element>(c: &Case) {
    let (x, kernel, dy) = arrays(c, reals);
    let (x, kernel, dy) = (cast::<T>(&x), cast::<T>(&kernel), cast::<T>(&dy.unwrap()));
    for simd in [Simd::Auto, Simd::Avx2, Simd::Portable] {
        let run = |parallel: bool| {
            let options = ComputeOptions { simd, parallel, ..ComputeOptions::default() };
            conv1d_backward_with(x.view(), kernel.view(), dy.view(), &c.params, true, &options).unwrap()
        };
        let sequential = run(false);
        assert_bitwise(&sequential, &run(true), &format!("parallel {c:?} {simd:?}"));
        #[cfg(feature = "rayon")]
        for threads in [1, 2, 3, 5] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| run(true));
            assert_bitwise(&sequential, &got, &format!("{threads} threads {c:?} {simd:?}"));
        }
    }
}

#[test]
fn parallel_and_sequential_agree_bitwise() {
    for c in larger_cases() {
        determinism::<f32>(&c);
    }
    determinism::<f64>(&larger_cases()[0]);
    determinism::<f64>(&larger_cases()[5]);
}

/// `L = sum(conv1d(x, kernel, bias) * dy)` in f64 through the forward reference.
fn loss(x: &Array3<f64>, kernel: &Array3<f64>, bias: &Array1<f64>, dy: &Array3<f64>, params: &Conv1dParams) -> f64 {
    let y = conv1d_reference(x.view(), kernel.view(), Some(bias.view()), params).unwrap();
    (&y * dy).sum()
}

#[test]
fn reference_matches_finite_differences() {
    let cases = [
        Case::new(2, 11, 2, 3, 2, 3, Conv1dParams::new().groups(2).padding(Padding::Same).strides(2)),
        Case::new(1, 13, 1, 2, 3, 4, Conv1dParams::new().padding(Padding::Causal).dilation_rate(2)),
        Case::new(
            2,
            12,
            3,
            1,
            2,
            2,
            Conv1dParams::new().groups(3).strides(3).dilation_rate(2).data_format(DataFormat::ChannelsFirst),
        ),
        Case::new(1, 9, 1, 2, 2, 3, Conv1dParams::new().data_format(DataFormat::ChannelsFirst)),
    ];
    for c in cases {
        let (x, kernel, dy) = arrays(&c, reals);
        let dy = dy.unwrap();
        let bias = Array1::from(reals(kernel.dim().2, 77));
        let grads = conv1d_backward_reference(x.view(), kernel.view(), dy.view(), &c.params, true).unwrap();
        let h = 1e-3;
        // L is linear in each argument, so a central difference is exact up to rounding.
        let numeric = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        for (index, &analytic) in grads.dx.indexed_iter() {
            let d = numeric(&|e| {
                let mut x = x.clone();
                x[index] += e;
                loss(&x, &kernel, &bias, &dy, &c.params)
            });
            assert!((d - analytic).abs() < 1e-9, "dx{index:?}: {d} vs {analytic} ({c:?})");
        }
        for (index, &analytic) in grads.dkernel.indexed_iter() {
            let d = numeric(&|e| {
                let mut k = kernel.clone();
                k[index] += e;
                loss(&x, &k, &bias, &dy, &c.params)
            });
            assert!((d - analytic).abs() < 1e-9, "dkernel{index:?}: {d} vs {analytic} ({c:?})");
        }
        for (o, &analytic) in grads.dbias.unwrap().iter().enumerate() {
            let d = numeric(&|e| {
                let mut b = bias.clone();
                b[o] += e;
                loss(&x, &kernel, &b, &dy, &c.params)
            });
            assert!((d - analytic).abs() < 1e-9, "dbias[{o}]: {d} vs {analytic} ({c:?})");
        }
    }
}

#[test]
fn wrong_output_gradient_shape_is_refused() {
    let x = Array3::<f32>::ones((2, 10, 3));
    let kernel = Array3::<f32>::ones((3, 3, 4));
    let dy = Array3::<f32>::ones((2, 10, 4)); // valid padding gives 8 steps
    let err = conv1d_backward(x.view(), kernel.view(), dy.view(), &Conv1dParams::new(), true).unwrap_err();
    match err {
        ConvError::ShapeMismatch(message) => {
            assert!(message.contains("[2, 10, 4]") && message.contains("[2, 8, 4]"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let err = conv1d_backward_reference(x.view(), kernel.view(), dy.view(), &Conv1dParams::new(), true).unwrap_err();
    assert!(matches!(err, ConvError::ShapeMismatch(_)));
}

#[test]
fn empty_batch_and_empty_input_give_zero_gradients() {
    let kernel = Array3::<f64>::from_elem((3, 2, 5), 1.5);
    // No batch items.
    let x = Array3::<f64>::zeros((0, 7, 2));
    let dy = Array3::<f64>::zeros((0, 5, 5));
    let g = conv1d_backward(x.view(), kernel.view(), dy.view(), &Conv1dParams::new(), true).unwrap();
    assert_eq!(g.dx.dim(), (0, 7, 2));
    assert_eq!(g.dkernel, Array3::<f64>::zeros((3, 2, 5)));
    assert_eq!(g.dbias.unwrap(), Array1::<f64>::zeros(5));
    // No steps: 'same' gives no output steps.
    let params = Conv1dParams::new().padding(Padding::Same).data_format(DataFormat::ChannelsFirst);
    let x = Array3::<f64>::zeros((2, 2, 0));
    let dy = Array3::<f64>::zeros((2, 5, 0));
    let g = conv1d_backward(x.view(), kernel.view(), dy.view(), &params, false).unwrap();
    assert_eq!(g.dx.dim(), (2, 2, 0));
    assert_eq!(g.dkernel, Array3::<f64>::zeros((3, 2, 5)));
    assert!(g.dbias.is_none());
    let r = conv1d_backward_reference(x.view(), kernel.view(), dy.view(), &params, false).unwrap();
    assert_eq!(g, r);
}

#[test]
fn strided_views_match_contiguous_copies() {
    let c = Case::new(2, 40, 1, 6, 10, 4, Conv1dParams::new().padding(Padding::Same));
    let (x, kernel, dy) = arrays(&c, integers);
    let dy = dy.unwrap();
    let expected = conv1d_backward(x.view(), kernel.view(), dy.view(), &c.params, true).unwrap();
    // The same values behind reversed and transposed memory layouts.
    let x_t = x.view().permuted_axes([2, 1, 0]).to_owned();
    let x_t = x_t.view().permuted_axes([2, 1, 0]);
    let mut k_rev = kernel.clone();
    k_rev.invert_axis(ndarray::Axis(2));
    let k_view = {
        let mut v = k_rev.view();
        v.invert_axis(ndarray::Axis(2));
        v
    };
    let dy_t = dy.view().permuted_axes([1, 0, 2]).to_owned();
    let dy_t = dy_t.view().permuted_axes([1, 0, 2]);
    let got = conv1d_backward(x_t, k_view, dy_t, &c.params, true).unwrap();
    assert_eq!(expected, got);
}

#[test]
fn cancelled_call_reports_cancellation() {
    let c = larger_cases()[0].clone();
    let (x, kernel, dy) = arrays(&c, integers);
    let dy = dy.unwrap();
    let token = CancelToken::new();
    token.cancel();
    let result = with_cancel(&token, || conv1d_backward(x.view(), kernel.view(), dy.view(), &c.params, true));
    assert_eq!(result.unwrap_err(), ConvError::Cancelled);
}
