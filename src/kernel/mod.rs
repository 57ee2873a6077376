//! Compute kernels and the choice between them. Kernels see explicit padding and
//! validated sizes only (see [`crate::geometry::Geometry`]).

pub mod depthwise;
pub mod gemm;
pub mod microkernel;
pub mod peak;
pub mod tile;

use microkernel::MicroKernel;
use num_traits::Float;
use std::fmt::Debug;
use std::sync::OnceLock;

/// Which instruction set the kernels may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Simd {
    /// The best the running CPU offers, detected once.
    #[default]
    Auto,
    /// Plain Rust only (the fallback on CPUs without AVX2 and FMA).
    Portable,
}

/// Which algorithm computes the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Chosen from the shapes by a cost model.
    #[default]
    Auto,
    /// Packed-panel GEMM over (output steps) x (filters), any configuration.
    Gemm,
    /// One filter per input channel (`groups == in_channels == filters`), vectorised over channels.
    Depthwise,
    /// The obvious nested loops; slow, for checking the others.
    Reference,
}

/// How a call runs: algorithm, instruction set and threads. Results are bitwise the same
/// for any `parallel` setting and any thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeOptions {
    pub algorithm: Algorithm,
    pub simd: Simd,
    /// Use the rayon thread pool (when the `rayon` feature is on and the call is large enough).
    pub parallel: bool,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        ComputeOptions { algorithm: Algorithm::Auto, simd: Simd::Auto, parallel: true }
    }
}

/// True when the CPU has AVX2 and FMA; detected once per process.
pub fn has_avx2_fma() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

pub(crate) fn use_avx2(simd: Simd) -> bool {
    simd == Simd::Auto && has_avx2_fma()
}

/// Floating-point types the kernels compute in: `f32` and `f64`.
pub trait Element: Float + Default + Send + Sync + Debug + 'static {
    /// The GEMM micro-kernel for this type and instruction set.
    fn microkernel(simd: Simd) -> MicroKernel<Self>;
    /// The depthwise block kernel for this type and instruction set.
    fn depthwise_block(simd: Simd) -> depthwise::DepthwiseBlock<Self>;
}

impl Element for f32 {
    fn microkernel(simd: Simd) -> MicroKernel<f32> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return MicroKernel {
                mr: 6,
                nr: 16,
                run: microkernel::avx2::f32_6x16::<false>,
                run_stream: microkernel::avx2::f32_6x16::<true>,
            };
        }
        let _ = simd;
        MicroKernel { mr: 4, nr: 8, run: microkernel::portable_4x8::<f32>, run_stream: microkernel::portable_4x8::<f32> }
    }

    fn depthwise_block(simd: Simd) -> depthwise::DepthwiseBlock<f32> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return depthwise::DepthwiseBlock { lanes: 16, run: depthwise::avx2::f32_4x16 };
        }
        let _ = simd;
        depthwise::DepthwiseBlock { lanes: 8, run: depthwise::block_generic::<f32, 8, false> }
    }
}

impl Element for f64 {
    fn microkernel(simd: Simd) -> MicroKernel<f64> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return MicroKernel {
                mr: 6,
                nr: 8,
                run: microkernel::avx2::f64_6x8::<false>,
                run_stream: microkernel::avx2::f64_6x8::<true>,
            };
        }
        let _ = simd;
        MicroKernel { mr: 4, nr: 8, run: microkernel::portable_4x8::<f64>, run_stream: microkernel::portable_4x8::<f64> }
    }

    fn depthwise_block(simd: Simd) -> depthwise::DepthwiseBlock<f64> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return depthwise::DepthwiseBlock { lanes: 8, run: depthwise::avx2::f64_4x8 };
        }
        let _ = simd;
        depthwise::DepthwiseBlock { lanes: 4, run: depthwise::block_generic::<f64, 4, false> }
    }
}

/// Raw output pointer shared by workers that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T>(pub *mut T);

// SAFETY: every kernel gives each work item a disjoint set of output elements, so no two
// threads write the same address and nobody reads the output while it is written.
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// A method, not a field access, so closures capture the `Sync` wrapper.
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

/// Calls `work(item, scratch)` for every item in `0..items`, on the rayon pool when `parallel`.
/// Each worker reuses one scratch buffer of `scratch_len` elements.
pub(crate) fn for_each_item<T, F>(items: usize, scratch_len: usize, parallel: bool, work: F)
where
    T: Element,
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    #[cfg(feature = "rayon")]
    if parallel && items > 1 && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        (0..items)
            .into_par_iter()
            .for_each_init(|| vec![T::zero(); scratch_len], |scratch, item| work(item, scratch));
        return;
    }
    let _ = parallel;
    let mut scratch = vec![T::zero(); scratch_len];
    for item in 0..items {
        work(item, &mut scratch);
    }
}

/// Multiply-adds below which thread start-up costs more than it saves.
pub(crate) const PARALLEL_MIN_MACS: f64 = 400_000.0;
