//! Hostile inputs to the Rust API: absurd sizes and parameters give errors, not panics or
//! aborts; broadcast arrays too large to compute are refused before anything is allocated;
//! cancellation stops a call early and changes nothing when it does not happen.

use conv1d_rs::{
    conv1d, conv1d_reference, conv1d_with, with_cancel, Algorithm, CancelToken, ComputeOptions, Conv1dParams, ConvError,
    DataFormat, Geometry, Padding, PreparedKernel,
};
use ndarray::{Array1, Array3};
use proptest::prelude::*;
use std::time::Duration;

fn ramp(shape: (usize, usize, usize), seed: usize) -> Array3<f64> {
    Array3::from_shape_fn(shape, |(a, b, c)| ((a * 7 + b * 3 + c * 5 + seed) % 9) as f64 - 4.0)
}

const PADDINGS: [Padding; 3] = [Padding::Valid, Padding::Same, Padding::Causal];

/// Ok with the reference's answer, or an error; anything else (a panic) fails the test.
fn ok_or_error(x: &Array3<f64>, kernel: &Array3<f64>, params: &Conv1dParams) {
    let reference = conv1d_reference(x.view(), kernel.view(), None, params);
    for algorithm in [Algorithm::Auto, Algorithm::Gemm, Algorithm::Reference] {
        let options = ComputeOptions { algorithm, ..ComputeOptions::default() };
        match (conv1d_with(x.view(), kernel.view(), None, params, &options), &reference) {
            (Ok(y), Ok(expected)) => assert_eq!(&y, expected, "{params:?} {algorithm:?}"),
            (Err(_), Err(_)) => {}
            (got, expected) => panic!("{params:?} {algorithm:?}: {got:?} but the reference gave {expected:?}"),
        }
    }
}

#[test]
fn huge_strides_and_dilation_give_results_or_errors() {
    let x = ramp((2, 9, 3), 0);
    let powers = [1usize, 2, 3, 1 << 31, 1 << 32, 1 << 62, 1 << 63, usize::MAX - 1, usize::MAX];
    for kernel_size in [1, 2, 3] {
        let kernel = ramp((kernel_size, 3, 4), 1);
        for &strides in &powers {
            for &dilation_rate in &powers {
                for padding in PADDINGS {
                    let params = Conv1dParams::new().strides(strides).dilation_rate(dilation_rate).padding(padding);
                    ok_or_error(&x, &kernel, &params);
                }
            }
        }
    }
}

#[test]
fn a_stride_past_the_input_gives_one_output_step() {
    let x = ramp((1, 9, 2), 0);
    let kernel = ramp((3, 2, 2), 1);
    for padding in PADDINGS {
        let short = conv1d(x.view(), kernel.view(), None, &Conv1dParams::new().strides(9).padding(padding)).unwrap();
        let huge = conv1d(x.view(), kernel.view(), None, &Conv1dParams::new().strides(1 << 62).padding(padding)).unwrap();
        assert_eq!(short, huge);
        assert_eq!(huge.shape(), &[1, 1, 2]);
    }
}

#[test]
fn positions_beyond_indexing_are_overflow_errors() {
    let x = ramp((1, 8, 1), 0);
    let kernel = ramp((2, 1, 1), 1);
    for dilation_rate in [1usize << 62, 1 << 63, usize::MAX] {
        let params = Conv1dParams::new().dilation_rate(dilation_rate).padding(Padding::Same);
        let err = conv1d(x.view(), kernel.view(), None, &params).unwrap_err();
        assert!(matches!(err, ConvError::Overflow(_)), "{err:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The size arithmetic itself, for any shapes and parameters at all.
    #[test]
    fn geometry_never_panics(
        x in prop::array::uniform3(prop_oneof![0usize..10, any::<usize>(), (0u32..64).prop_map(|p| 1usize << p)]),
        kernel in prop::array::uniform3(prop_oneof![0usize..10, any::<usize>(), (0u32..64).prop_map(|p| 1usize << p)]),
        bias in prop::option::of(any::<usize>()),
        strides in prop_oneof![1usize..5, any::<usize>()],
        dilation_rate in prop_oneof![1usize..5, any::<usize>()],
        groups in prop_oneof![1usize..5, any::<usize>()],
        padding in prop::sample::select(PADDINGS.to_vec()),
        first in any::<bool>(),
    ) {
        let data_format = if first { DataFormat::ChannelsFirst } else { DataFormat::ChannelsLast };
        let params = Conv1dParams { strides, dilation_rate, groups, padding, data_format };
        if let Ok(geometry) = Geometry::new(x, kernel, bias, &params) {
            let _ = geometry.output_len();
            let _ = geometry.macs();
            // What the kernels compute unchecked: positions of whole tiles past the last
            // output step, and tap strides of packed tiles (the fuzzer once found a one-tap
            // kernel with a huge dilation overflowing the latter).
            let span = geometry.halo().checked_add(1);
            let reach = (geometry.out_steps + 8192).checked_mul(geometry.strides);
            let tap = geometry.dilation_rate.checked_mul(geometry.in_channels.max(1));
            prop_assert!(span.is_some() && reach.is_some() && tap.is_some_and(|t| t <= isize::MAX as usize));
        }
    }
}

fn overcommits_always() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|mode| mode.trim() == "1")
}

#[test]
fn broadcast_input_with_a_huge_output_is_refused_before_allocating() {
    let one = Array3::<f32>::ones((1, 1, 1));
    let x = one.broadcast((1 << 20, 1 << 20, 1)).unwrap();
    let kernel = Array3::<f32>::ones((1, 1, 1 << 10));
    // 2**50 outputs: refused by the allocator, or (with unlimited overcommit) too slow to try.
    if !overcommits_always() {
        let err = conv1d(x, kernel.view(), None, &Conv1dParams::new()).unwrap_err();
        assert!(matches!(err, ConvError::TooLarge(_)), "{err:?}");
    }
    // 2**64 outputs overflow before any allocator is asked.
    let kernel = Array3::<f32>::ones((1, 1, 4));
    let x = one.broadcast((1 << 31, 1 << 31, 1)).unwrap();
    let err = conv1d(x, kernel.view(), None, &Conv1dParams::new()).unwrap_err();
    assert!(matches!(err, ConvError::TooLarge(_)), "{err:?}");
}

#[test]
fn broadcast_kernel_too_large_to_pack_is_refused() {
    if overcommits_always() {
        return;
    }
    let one = Array3::<f32>::ones((1, 1, 1));
    let x = Array3::<f32>::ones((1, 8, 1));
    for shape in [(1, 1, 1usize << 42), (1 << 21, 1, 1 << 21)] {
        let kernel = one.broadcast(shape).unwrap();
        let err = conv1d(x.view(), kernel, None, &Conv1dParams::new().padding(Padding::Same)).unwrap_err();
        assert!(matches!(err, ConvError::TooLarge(_)), "{err:?}");
    }
}

#[test]
fn empty_batches_steps_and_channels() {
    let kernel = ramp((3, 2, 4), 1);
    let y = conv1d(ramp((0, 5, 2), 0).view(), kernel.view(), None, &Conv1dParams::new()).unwrap();
    assert_eq!(y.shape(), &[0, 3, 4]);
    let y = conv1d(ramp((2, 0, 2), 0).view(), kernel.view(), None, &Conv1dParams::new().padding(Padding::Same)).unwrap();
    assert_eq!(y.shape(), &[2, 0, 4]);
    assert!(conv1d(ramp((2, 0, 2), 0).view(), kernel.view(), None, &Conv1dParams::new()).is_err());
    // No input channels: each output is its bias.
    let bias = Array1::from_vec(vec![1.0, 2.0, 3.0]);
    for (data_format, shape) in [(DataFormat::ChannelsLast, (2, 5, 0)), (DataFormat::ChannelsFirst, (2, 0, 5))] {
        let params = Conv1dParams::new().padding(Padding::Same).data_format(data_format);
        let (x, kernel) = (Array3::<f64>::zeros(shape), Array3::<f64>::zeros((2, 0, 3)));
        let y = conv1d(x.view(), kernel.view(), Some(bias.view()), &params).unwrap();
        let expected = conv1d_reference(x.view(), kernel.view(), Some(bias.view()), &params).unwrap();
        assert_eq!(y, expected);
        assert!(y.iter().all(|v| [1.0, 2.0, 3.0].contains(v)));
    }
}

#[test]
fn a_cancelled_token_stops_the_call() {
    let (x, kernel) = (ramp((2, 50, 3), 0), ramp((3, 3, 4), 1));
    let token = CancelToken::new();
    token.cancel();
    for algorithm in [Algorithm::Auto, Algorithm::Gemm, Algorithm::Fft, Algorithm::Reference] {
        let options = ComputeOptions { algorithm, ..ComputeOptions::default() };
        let result = with_cancel(&token, || conv1d_with(x.view(), kernel.view(), None, &Conv1dParams::new(), &options));
        assert_eq!(result, Err(ConvError::Cancelled));
    }
    // The token is scoped: outside `with_cancel` the same call runs.
    assert!(conv1d(x.view(), kernel.view(), None, &Conv1dParams::new()).is_ok());
}

#[test]
fn cancelling_from_another_thread_stops_a_long_call_early() {
    let x = ramp((1, 60_000, 64), 0);
    let kernel = ramp((64, 64, 64), 1);
    let options = ComputeOptions { algorithm: Algorithm::Gemm, ..ComputeOptions::default() };
    let prepared = PreparedKernel::new(kernel.view(), 1, &options).unwrap();
    let params = Conv1dParams::new().padding(Padding::Same);
    let token = CancelToken::new();
    let result = std::thread::scope(|scope| {
        let canceller = token.clone();
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            canceller.cancel();
        });
        with_cancel(&token, || prepared.forward(x.view(), None, &params))
    });
    // Ok only on a machine that finishes 16 GMAC within 100 ms.
    assert!(matches!(result, Err(ConvError::Cancelled) | Ok(_)), "{result:?}");
    // The kernel and the thread pool are still usable.
    let small = ramp((1, 100, 64), 2);
    let y = prepared.forward(small.view(), None, &params).unwrap();
    assert_eq!(y, conv1d_reference(small.view(), kernel.view(), None, &params).unwrap());
}

#[test]
fn watching_a_token_that_is_never_cancelled_changes_nothing() {
    let x = Array3::from_shape_fn((3, 700, 33), |(a, b, c)| ((a * 31 + b * 17 + c * 7) % 23) as f32 / 7.0 - 1.5);
    let kernel = Array3::from_shape_fn((5, 33, 40), |(a, b, c)| ((a * 13 + b * 5 + c * 3) % 19) as f32 / 5.0 - 1.8);
    let params = Conv1dParams::new().padding(Padding::Causal).dilation_rate(2);
    for parallel in [false, true] {
        let options = ComputeOptions { parallel, ..ComputeOptions::default() };
        let plain = conv1d_with(x.view(), kernel.view(), None, &params, &options).unwrap();
        let token = CancelToken::new();
        let watched = with_cancel(&token, || conv1d_with(x.view(), kernel.view(), None, &params, &options)).unwrap();
        assert_eq!(plain, watched);
    }
}
