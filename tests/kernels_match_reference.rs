//! Every kernel path against the reference loops, over random shapes and options.

use conv1d_rs::{conv1d_reference, conv1d_with, Algorithm, ComputeOptions, Conv1dParams, DataFormat, Padding, PreparedKernel, Simd};
use ndarray::{Array1, Array3, ArrayViewMut3};
use proptest::prelude::*;

mod common;
use common::{case, input_and_kernel, integers, xorshift, Case};

fn arrays(c: &Case) -> (Array3<f64>, Array3<f64>, Array1<f64>) {
    let (x, kernel) = input_and_kernel(c, integers);
    let bias = Array1::from(integers(kernel.dim().2, c.seed ^ 0x51));
    (x, kernel, bias)
}

fn check<T: conv1d_rs::Element>(c: &Case, cast: fn(f64) -> T) -> Result<(), TestCaseError> {
    let (x, kernel, bias) = arrays(c);
    let (x, kernel, bias) = (x.mapv(cast), kernel.mapv(cast), bias.mapv(cast));
    let bias = c.use_bias.then(|| bias.view());
    let expected = conv1d_reference(x.view(), kernel.view(), bias, &c.params);
    let depthwise = c.in_per_group == 1 && c.filters_per_group == 1;
    for algorithm in [Algorithm::Auto, Algorithm::Gemm, Algorithm::Depthwise] {
        if algorithm == Algorithm::Depthwise && !depthwise {
            continue;
        }
        for simd in [Simd::Auto, Simd::Avx2, Simd::Portable] {
            for parallel in [false, true] {
                let options = ComputeOptions { algorithm, simd, parallel };
                let got = conv1d_with(x.view(), kernel.view(), bias, &c.params, &options);
                match (&expected, &got) {
                    (Ok(e), Ok(g)) => prop_assert_eq!(e, g, "{:?} {:?}", options, c),
                    (Err(e), Err(g)) => prop_assert_eq!(e, g),
                    _ => prop_assert!(false, "one path failed: {:?} vs {:?} ({:?})", expected, got, options),
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn f64_kernels_match_reference(c in case(1..6)) {
        check::<f64>(&c, |v| v)?;
    }

    #[test]
    fn f32_kernels_match_reference(c in case(1..6)) {
        check::<f32>(&c, |v| v as f32)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]
    /// Whole blocks of 32 float32 or 16 float64 filters per group, which CPUs with AVX-512
    /// compute in zmm tiles.
    #[test]
    fn f32_wide_filter_blocks_match_reference(c in case(1..6), blocks in 1usize..4) {
        check::<f32>(&Case { filters_per_group: 32 * blocks, ..c }, |v| v as f32)?;
    }

    #[test]
    fn f64_wide_filter_blocks_match_reference(c in case(1..6), blocks in 1usize..4) {
        check::<f64>(&Case { filters_per_group: 16 * blocks, ..c }, |v| v)?;
    }
}

#[test]
fn depthwise_with_many_channels_matches_reference() {
    // The last case's output passes the size from which it is written around the caches, and
    // its channels are several blocks of lanes taken together plus a few left over.
    let cases = [(37usize, 50usize, 7usize, 1usize, 1usize), (64, 50, 31, 2, 1), (9, 50, 3, 1, 4), (404, 2650, 7, 1, 1)];
    for &(channels, steps, k, s, d) in &cases {
        let c = Case {
            batch: 2,
            steps,
            groups: channels,
            in_per_group: 1,
            filters_per_group: 1,
            kernel_size: k,
            params: Conv1dParams::new().groups(channels).strides(s).dilation_rate(d).padding(Padding::Same),
            use_bias: true,
            seed: 7,
        };
        check::<f32>(&c, |v| v as f32).unwrap();
        check::<f64>(&c, |v| v).unwrap();
    }
}

#[test]
fn large_gemm_matches_reference_bitwise_across_thread_settings() {
    let c = Case {
        batch: 3,
        steps: 300,
        groups: 1,
        in_per_group: 37,
        filters_per_group: 45,
        kernel_size: 5,
        params: Conv1dParams::new().padding(Padding::Same).dilation_rate(2),
        use_bias: true,
        seed: 11,
    };
    check::<f32>(&c, |v| v as f32).unwrap();
}

#[test]
fn depthwise_channels_first_rows_in_segments_match_reference() {
    // Rows longer than one segment of output steps, with padding at both ends of a row and
    // a last register block that runs past the row's end.
    for padding in [Padding::Same, Padding::Causal, Padding::Valid] {
        let c = Case {
            batch: 2,
            steps: 4500,
            groups: 5,
            in_per_group: 1,
            filters_per_group: 1,
            kernel_size: 9,
            params: Conv1dParams::new().groups(5).dilation_rate(3).padding(padding).data_format(DataFormat::ChannelsFirst),
            use_bias: true,
            seed: 19,
        };
        check::<f32>(&c, |v| v as f32).unwrap();
        check::<f64>(&c, |v| v).unwrap();
    }
}

#[test]
fn one_short_sequence_split_across_threads_matches_reference_bitwise() {
    // One batch item whose steps fit one tile: with parallel on it is cut into a tile per
    // thread, and every setting must give the reference's sums exactly.
    let c = Case {
        batch: 1,
        steps: 130,
        groups: 1,
        in_per_group: 64,
        filters_per_group: 128,
        kernel_size: 5,
        params: Conv1dParams::new().padding(Padding::Same),
        use_bias: true,
        seed: 17,
    };
    check::<f32>(&c, |v| v as f32).unwrap();
}

#[test]
fn groups_taken_several_at_a_time_match_reference_with_a_short_last_run() {
    // Per-group weights near the panel-major bound, so a work item takes a run of groups
    // (5 of f32's 24 KiB panels, 5 of f64's) and 7 groups leave a shorter last run.
    for (cg, fg, k) in [(96usize, 32usize, 2usize), (64, 16, 3)] {
        for format in [DataFormat::ChannelsLast, DataFormat::ChannelsFirst] {
            let c = Case {
                batch: 2,
                steps: 40,
                groups: 7,
                in_per_group: cg,
                filters_per_group: fg,
                kernel_size: k,
                params: Conv1dParams::new().groups(7).padding(Padding::Same).data_format(format),
                use_bias: true,
                seed: 13,
            };
            check::<f32>(&c, |v| v as f32).unwrap();
            check::<f64>(&c, |v| v).unwrap();
        }
    }
}

#[test]
fn tiles_taken_in_strips_match_reference() {
    // One kernel call computes a strip of tiles: across groups of exactly one register block
    // of filters (8 and 16 for f32, 4 and 8 for f64), across a group's full blocks before a
    // partial one (40 filters), and down a tile's full panels before a short last one when a
    // block's weights are too large to revisit per panel (64 x 3 x 40 values).
    let shapes = [(5usize, 4usize, 8usize, 7usize), (5, 4, 16, 7), (3, 4, 4, 5), (3, 4, 40, 2), (3, 64, 40, 1)];
    for (k, cg, fg, groups) in shapes {
        for format in [DataFormat::ChannelsLast, DataFormat::ChannelsFirst] {
            let c = Case {
                batch: 2,
                steps: 203,
                groups,
                in_per_group: cg,
                filters_per_group: fg,
                kernel_size: k,
                params: Conv1dParams::new().groups(groups).padding(Padding::Same).data_format(format),
                use_bias: true,
                seed: 23,
            };
            check::<f32>(&c, |v| v as f32).unwrap();
            check::<f64>(&c, |v| v).unwrap();
        }
    }
}

#[test]
fn taps_too_far_apart_for_a_contiguous_tile_use_per_row_packing() {
    // span = 300_000 * 2 + 1 steps: a contiguous tile would exceed the per-worker bound.
    for (groups, cg, fg) in [(1usize, 4usize, 3usize), (4, 1, 1)] {
        for padding in [Padding::Valid, Padding::Causal] {
            let c = Case {
                batch: 1,
                steps: if padding == Padding::Valid { 600_010 } else { 40 },
                groups,
                in_per_group: cg,
                filters_per_group: fg,
                kernel_size: 3,
                params: Conv1dParams::new().dilation_rate(300_000).groups(groups).padding(padding),
                use_bias: true,
                seed: 5,
            };
            check::<f32>(&c, |v| v as f32).unwrap();
        }
    }
}

#[test]
fn outputs_larger_than_the_caches_match_reference() {
    // Over 8 MiB of output: written with non-temporal stores where the rows are aligned
    // (channels_last; 32 filters fill a zmm tile in both precisions on AVX-512 CPUs), or
    // through the transposes (channels_first, rows of an odd number of steps, so their runs
    // start anywhere in a line).
    for format in [DataFormat::ChannelsLast, DataFormat::ChannelsFirst] {
        for (cg, fg, groups) in [(1usize, 32usize, 1usize), (3, 20, 2)] {
            let c = Case {
                batch: 2,
                steps: 40_001,
                groups,
                in_per_group: cg,
                filters_per_group: fg,
                kernel_size: 3,
                params: Conv1dParams::new().padding(Padding::Same).data_format(format),
                use_bias: true,
                seed: 9,
            };
            check::<f32>(&c, |v| v as f32).unwrap();
            check::<f64>(&c, |v| v).unwrap();
        }
    }
}

/// Output rows on a cache line take one non-temporal store per register; rows 16 bytes off
/// it, one per 16 bytes. Both must write the same values.
fn check_streamed_into<T: conv1d_rs::Element>(cast: fn(f64) -> T) {
    let c = Case {
        batch: 2,
        steps: 40_001,
        groups: 1,
        in_per_group: 1,
        filters_per_group: 32,
        kernel_size: 3,
        params: Conv1dParams::new().padding(Padding::Same),
        use_bias: true,
        seed: 5,
    };
    let (x, kernel, bias) = arrays(&c);
    let (x, kernel, bias) = (x.mapv(cast), kernel.mapv(cast), bias.mapv(cast));
    let expected = conv1d_reference(x.view(), kernel.view(), Some(bias.view()), &c.params).unwrap();
    let elem = std::mem::size_of::<T>();
    let mut buffer = vec![T::zero(); expected.len() + 128 / elem];
    for shift in [0, 16] {
        let start = ((buffer.as_ptr() as usize).wrapping_neg() % 64 + shift) / elem;
        for simd in [Simd::Auto, Simd::Avx2] {
            let options = ComputeOptions { simd, ..ComputeOptions::default() };
            let prepared = PreparedKernel::new(kernel.view(), 1, &options).unwrap();
            let out = ArrayViewMut3::from_shape(expected.dim(), &mut buffer[start..start + expected.len()]).unwrap();
            prepared.forward_into(x.view(), Some(bias.view()), &c.params, out).unwrap();
            assert!(buffer[start..start + expected.len()] == *expected.as_slice().unwrap(), "{simd:?}, {shift} bytes off a line");
        }
    }
}

#[test]
fn outputs_streamed_into_aligned_and_unaligned_rows_match_reference() {
    check_streamed_into::<f32>(|v| v as f32);
    check_streamed_into::<f64>(|v| v);
}

#[test]
fn weights_too_large_for_the_caches_are_summed_a_slice_of_channels_at_a_time() {
    // Over 4 MiB of weights per group in both precisions: the channel sums are taken in slices
    // (the last one shorter), over partial panels and a partial last filter block, on tiles of
    // one slice's channels (channels_last) or of every channel (channels_first). The
    // narrow-tile case slices a long kernel's few filters.
    let shapes = [
        (1100usize, 330usize, 3usize, Conv1dParams::new().padding(Padding::Same)),
        (1100, 330, 3, Conv1dParams::new().padding(Padding::Causal).dilation_rate(2).strides(2)),
        (16400, 5, 8, Conv1dParams::new().padding(Padding::Valid)),
        // Whole blocks of 32 filters, which AVX-512 CPUs compute in zmm tiles.
        (5500, 64, 3, Conv1dParams::new().padding(Padding::Same)),
    ];
    for (cg, fg, k, params) in shapes {
        for format in [DataFormat::ChannelsLast, DataFormat::ChannelsFirst] {
            let c = Case {
                batch: 2,
                steps: 45,
                groups: 1,
                in_per_group: cg,
                filters_per_group: fg,
                kernel_size: k,
                params: params.data_format(format),
                use_bias: true,
                seed: 23,
            };
            check::<f32>(&c, |v| v as f32).unwrap();
            check::<f64>(&c, |v| v).unwrap();
        }
    }
}

#[test]
fn sliced_channel_sums_do_not_depend_on_the_kernel_width() {
    // Inexact values, so the order of the sums shows: the slices are set per cache line of
    // filters, so the AVX-512 tiles (where the CPU has them) and the AVX2 tiles cut the
    // channel sums alike and agree to the bit.
    let uniform = |len: usize, seed: u64| {
        let mut state = seed | 1;
        (0..len).map(|_| (xorshift(&mut state) >> 11) as f64 / (1u64 << 53) as f64 - 0.5).collect()
    };
    let c = Case::new(2, 40, 1, 5500, 64, 3, Conv1dParams::new().padding(Padding::Same));
    let (x, kernel) = input_and_kernel(&c, uniform);
    let (x, kernel) = (x.mapv(|v| v as f32), kernel.mapv(|v| v as f32));
    let run = |simd| {
        let options = ComputeOptions { algorithm: Algorithm::Gemm, simd, parallel: true };
        conv1d_with(x.view(), kernel.view(), None, &c.params, &options).unwrap()
    };
    assert_eq!(run(Simd::Auto), run(Simd::Avx2));
}

/// The FFT path rounds differently from a direct sum: compare within what float64 rounding allows.
#[test]
fn fft_path_matches_reference_within_rounding() {
    let cases = [
        (2usize, 300usize, 1usize, 3usize, 4usize, 40usize, 1usize, Padding::Same, DataFormat::ChannelsLast),
        (1, 257, 2, 2, 3, 17, 3, Padding::Causal, DataFormat::ChannelsFirst),
        (3, 120, 1, 1, 5, 33, 2, Padding::Valid, DataFormat::ChannelsLast),
        (1, 50, 4, 1, 1, 64, 1, Padding::Same, DataFormat::ChannelsFirst),
        // Filters gathered 16 at a time into channels_last rows: two full runs and a short one.
        (2, 200, 2, 2, 37, 24, 1, Padding::Same, DataFormat::ChannelsLast),
        // Many blocks per sequence, taken two at a time (and one left over), with a run of 16
        // filters and a short odd one.
        (3, 2000, 1, 3, 21, 20, 1, Padding::Same, DataFormat::ChannelsLast),
        (2, 1200, 1, 2, 5, 30, 2, Padding::Causal, DataFormat::ChannelsFirst),
        // Input channels gathered 8 at a time: a full gather and a short one, from channels_last
        // rows (of two groups) and from channels_first ones.
        (2, 600, 2, 11, 3, 40, 1, Padding::Same, DataFormat::ChannelsLast),
        (1, 500, 1, 11, 2, 33, 2, Padding::Causal, DataFormat::ChannelsFirst),
        // Transforms of 2048 steps: one block at a time.
        (1, 5000, 1, 2, 3, 300, 1, Padding::Valid, DataFormat::ChannelsLast),
        // Outputs past 8 MiB in both types, written around the caches.
        (1, 70_000, 1, 1, 32, 40, 1, Padding::Valid, DataFormat::ChannelsLast),
    ];
    for (batch, steps, groups, cg, fg, k, d, padding, format) in cases {
        let c = Case {
            batch,
            steps,
            groups,
            in_per_group: cg,
            filters_per_group: fg,
            kernel_size: k,
            params: Conv1dParams::new().groups(groups).dilation_rate(d).padding(padding).data_format(format),
            use_bias: true,
            seed: 3,
        };
        let (x, kernel, bias) = arrays(&c);
        let expected = conv1d_reference(x.view(), kernel.view(), Some(bias.view()), &c.params).unwrap();
        for simd in [Simd::Auto, Simd::Avx2, Simd::Portable] {
            let options = ComputeOptions { algorithm: Algorithm::Fft, simd, ..ComputeOptions::default() };
            let got = conv1d_with(x.view(), kernel.view(), Some(bias.view()), &c.params, &options).unwrap();
            // Small-integer data: exact sums, so any difference is the FFT's rounding.
            let worst = expected.iter().zip(got.iter()).map(|(e, g)| (e - g).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-9, "{c:?} {simd:?}: max error {worst}");
            let got32 = conv1d_with(
                x.mapv(|v| v as f32).view(),
                kernel.mapv(|v| v as f32).view(),
                Some(bias.mapv(|v| v as f32).view()),
                &c.params,
                &options,
            )
            .unwrap();
            // Transforms run in f64, so f32 results are the exact sums rounded once, give or take
            // the f64 transform error (which keeps an exact zero from coming out as zero).
            let close = |e: f64, g: f32| (e as f32 == g) || (e - g as f64).abs() < 1e-9;
            assert!(expected.iter().zip(got32.iter()).all(|(&e, &g)| close(e, g)), "{c:?} {simd:?}");
        }
    }
}

#[test]
fn fft_path_keeps_non_finite_values_where_the_direct_sum_puts_them() {
    let c = Case {
        batch: 1,
        steps: 400,
        groups: 1,
        in_per_group: 2,
        filters_per_group: 3,
        kernel_size: 40,
        params: Conv1dParams::new().padding(Padding::Same),
        use_bias: false,
        seed: 4,
    };
    let (mut x, kernel, _) = arrays(&c);
    x[[0, 200, 1]] = f64::NAN;
    let options = ComputeOptions { algorithm: Algorithm::Fft, ..ComputeOptions::default() };
    let got = conv1d_with(x.view(), kernel.view(), None, &c.params, &options).unwrap();
    let expected = conv1d_reference(x.view(), kernel.view(), None, &c.params).unwrap();
    for (e, g) in expected.iter().zip(got.iter()) {
        assert_eq!(e.is_nan(), g.is_nan());
    }
}
