//! Compute kernels and the choice between them. Kernels see explicit padding and
//! validated sizes only (see [`crate::geometry::Geometry`]).

pub mod aligned;
pub mod depthwise;
pub mod depthwise_steps;
pub mod fft;
pub mod fft_rows;
pub mod gemm;
pub mod microkernel;
pub mod peak;
#[cfg(feature = "rayon")]
mod share;
pub mod tile;
pub mod transpose;

use microkernel::MicroKernel;
use num_traits::Float;
use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Which instruction set the kernels may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Simd {
    /// The best the running CPU offers, detected once.
    #[default]
    Auto,
    /// AVX2 and FMA kernels even where the CPU also has AVX-512 (else as `Auto`).
    Avx2,
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
    /// FFT overlap-save, for long kernels with stride 1 (non-finite inputs fall back to GEMM,
    /// so NaN and inf stay where the direct sum puts them).
    Fft,
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

/// True when the CPU has AVX-512 F and DQ (besides AVX2 and FMA); detected once per process.
pub fn has_avx512() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            has_avx2_fma() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

pub(crate) fn use_avx2(simd: Simd) -> bool {
    simd != Simd::Portable && has_avx2_fma()
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn use_avx512(simd: Simd) -> bool {
    simd == Simd::Auto && has_avx512()
}

/// The [`MicroKernel`] of a 6-step two-register tile of `microkernel::x86`: its plain,
/// streaming and accumulating entries.
#[cfg(target_arch = "x86_64")]
macro_rules! two_register_tile {
    ($tile:ident, $nr:expr) => {
        MicroKernel {
            mr: 6,
            nr: $nr,
            run: microkernel::x86::$tile::<false, false>,
            run_stream: microkernel::x86::$tile::<true, false>,
            run_acc: microkernel::x86::$tile::<false, true>,
        }
    };
}

/// Floating-point types the kernels compute in: `f32` and `f64`.
pub trait Element: Float + Default + Send + Sync + Debug + 'static {
    /// The GEMM micro-kernel for this type and instruction set, for groups of
    /// `filters_per_group` filters: a narrow tile when they fill at most one register.
    fn microkernel(simd: Simd, filters_per_group: usize) -> MicroKernel<Self>;
    /// The depthwise block kernel for this type and instruction set.
    fn depthwise_block(simd: Simd) -> depthwise::DepthwiseBlock<Self>;
    /// The register transpose between `[step][channel]` and `[channel][step]` blocks.
    fn transpose(simd: Simd) -> transpose::TransposeFn<Self>;
    /// The writer of the FFT path's channels_last rows.
    fn fft_rows(simd: Simd) -> fft_rows::RowsFn<Self>;
}

impl Element for f32 {
    fn fft_rows(simd: Simd) -> fft_rows::RowsFn<f32> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return fft_rows::avx2::f32_rows;
        }
        let _ = simd;
        fft_rows::rows_generic::<f32>
    }

    fn transpose(simd: Simd) -> transpose::TransposeFn<f32> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return transpose::avx2::f32_8x8;
        }
        let _ = simd;
        transpose::transpose_generic::<f32>
    }

    fn microkernel(simd: Simd, filters_per_group: usize) -> MicroKernel<f32> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) && filters_per_group <= 8 {
            return MicroKernel {
                mr: microkernel::NARROW_MR,
                nr: 8,
                run: microkernel::x86::f32_12x8::<false>,
                run_stream: microkernel::x86::f32_12x8::<false>,
                run_acc: microkernel::x86::f32_12x8::<true>,
            };
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx512(simd) && filters_per_group.is_multiple_of(32) {
            // Same sums in the same order as the AVX2 tile, twice as wide: half the
            // broadcasts per multiply-add (measured 5-10% faster on Zen 4 GEMM shapes).
            return two_register_tile!(f32_6x32, 32);
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return two_register_tile!(f32_6x16, 16);
        }
        let _ = (simd, filters_per_group);
        MicroKernel {
            mr: 4,
            nr: 8,
            run: microkernel::portable_4x8::<f32, false>,
            run_stream: microkernel::portable_4x8::<f32, false>,
            run_acc: microkernel::portable_4x8::<f32, true>,
        }
    }

    fn depthwise_block(simd: Simd) -> depthwise::DepthwiseBlock<f32> {
        #[cfg(target_arch = "x86_64")]
        if use_avx512(simd) {
            return depthwise::DepthwiseBlock { lanes: 16, run: depthwise::avx512::f32_8x16 };
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return depthwise::DepthwiseBlock { lanes: 16, run: depthwise::avx2::f32_4x16 };
        }
        let _ = simd;
        depthwise::DepthwiseBlock { lanes: 8, run: depthwise::block_generic::<f32, 8, false> }
    }
}

impl Element for f64 {
    fn fft_rows(simd: Simd) -> fft_rows::RowsFn<f64> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return fft_rows::avx2::f64_rows;
        }
        let _ = simd;
        fft_rows::rows_generic::<f64>
    }

    fn transpose(simd: Simd) -> transpose::TransposeFn<f64> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return transpose::avx2::f64_4x4;
        }
        let _ = simd;
        transpose::transpose_generic::<f64>
    }

    fn microkernel(simd: Simd, filters_per_group: usize) -> MicroKernel<f64> {
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) && filters_per_group <= 4 {
            return MicroKernel {
                mr: microkernel::NARROW_MR,
                nr: 4,
                run: microkernel::x86::f64_12x4::<false>,
                run_stream: microkernel::x86::f64_12x4::<false>,
                run_acc: microkernel::x86::f64_12x4::<true>,
            };
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx512(simd) && filters_per_group.is_multiple_of(16) {
            // As for f32: the AVX2 tile's sums, twice as wide.
            return two_register_tile!(f64_6x16, 16);
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx2(simd) {
            return two_register_tile!(f64_6x8, 8);
        }
        let _ = (simd, filters_per_group);
        MicroKernel {
            mr: 4,
            nr: 8,
            run: microkernel::portable_4x8::<f64, false>,
            run_stream: microkernel::portable_4x8::<f64, false>,
            run_acc: microkernel::portable_4x8::<f64, true>,
        }
    }

    fn depthwise_block(simd: Simd) -> depthwise::DepthwiseBlock<f64> {
        #[cfg(target_arch = "x86_64")]
        if use_avx512(simd) {
            return depthwise::DepthwiseBlock { lanes: 8, run: depthwise::avx512::f64_8x8 };
        }
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

/// Stops running convolutions early: cancel it from any thread, and every call made under
/// [`with_cancel`] with this token returns [`crate::ConvError::Cancelled`] within about one
/// work item (a tile of output steps). Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

thread_local! {
    /// The token calls on this thread watch, set by `with_cancel`.
    static CANCEL: RefCell<Option<CancelToken>> = const { RefCell::new(None) };
    /// The supervised call running on this thread, which `for_each_item` reports to.
    static CALL: RefCell<Option<Arc<CallState>>> = const { RefCell::new(None) };
}

/// Runs `f`; convolutions that `f` runs on this thread stop early once `token` is cancelled.
///
/// ```
/// use conv1d_rs::{conv1d, with_cancel, CancelToken, Conv1dParams, ConvError};
/// use ndarray::Array3;
/// let token = CancelToken::new();
/// token.cancel();
/// let (x, k) = (Array3::<f32>::ones((1, 100, 2)), Array3::<f32>::ones((3, 2, 4)));
/// let result = with_cancel(&token, || conv1d(x.view(), k.view(), None, &Conv1dParams::new()));
/// assert_eq!(result, Err(ConvError::Cancelled));
/// ```
pub fn with_cancel<R>(token: &CancelToken, f: impl FnOnce() -> R) -> R {
    let previous = CANCEL.with(|c| c.replace(Some(token.clone())));
    // Restores the outer token even if `f` panics.
    struct Restore(Option<CancelToken>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CANCEL.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    f()
}

// Why some work items of a call did not run (`CallState::stopped`).
const RAN_ALL: u8 = 0;
const CANCELLED: u8 = 1;
const NO_SCRATCH: u8 = 2;

/// What the work items of one call share: the caller's token and why they stopped, if they did.
pub(crate) struct CallState {
    cancel: Option<CancelToken>,
    stopped: AtomicU8,
    scratch_len: AtomicUsize,
}

impl CallState {
    fn new(cancel: Option<CancelToken>) -> Self {
        CallState { cancel, stopped: AtomicU8::new(RAN_ALL), scratch_len: AtomicUsize::new(0) }
    }

    /// True when the remaining items must be skipped.
    fn stopping(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed) != RAN_ALL {
            return true;
        }
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            self.stop(CANCELLED);
            return true;
        }
        false
    }

    fn stop(&self, why: u8) {
        let _ = self.stopped.compare_exchange(RAN_ALL, why, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A worker's scratch buffer, or None (the call stopped) when it cannot be allocated:
    /// a failed infallible allocation would abort the process.
    pub(crate) fn scratch<T: Element>(&self, len: usize) -> Option<Vec<T>> {
        let mut scratch = Vec::new();
        if scratch.try_reserve_exact(len).is_err() {
            self.scratch_len.store(len, Ordering::Relaxed);
            self.stop(NO_SCRATCH);
            return None;
        }
        scratch.resize(len, T::zero());
        Some(scratch)
    }
}

/// Runs `f`, whose `for_each_item` calls on this thread skip their remaining items once the
/// token of the enclosing [`with_cancel`] is cancelled or a scratch buffer cannot be had;
/// then the output is incomplete and this returns the reason.
pub(crate) fn supervised(f: impl FnOnce()) -> crate::Result<()> {
    let cancel = CANCEL.with(|c| c.borrow().clone());
    if cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
        return Err(crate::ConvError::Cancelled);
    }
    let state = Arc::new(CallState::new(cancel));
    let previous = CALL.with(|c| c.replace(Some(state.clone())));
    struct Restore(Option<Arc<CallState>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CALL.with(|c| *c.borrow_mut() = previous);
        }
    }
    let restore = Restore(previous);
    f();
    drop(restore);
    match state.stopped.load(Ordering::Relaxed) {
        RAN_ALL => Ok(()),
        CANCELLED => Err(crate::ConvError::Cancelled),
        _ => Err(crate::ConvError::TooLarge(format!(
            "cannot allocate a working tile of {} elements",
            state.scratch_len.load(Ordering::Relaxed)
        ))),
    }
}

/// Tiles to split each sequence into so that every thread has work when `outer` (batch items
/// times group chunks) is fewer than the threads: a single sequence uses both cores once its
/// work outweighs handing tiles to the pool (measured on 2 cores, 64 x 64 channels with 3 taps:
/// 48 steps, 13 us, 6% slower split; 80 steps, 21 us, 14% faster). Two tiles per thread, so
/// that a worker that starts late still takes a share.
pub(crate) fn min_tiles(geo: &crate::geometry::Geometry, parallel: bool, outer: usize) -> usize {
    if parallel && geo.macs() >= SPLIT_MIN_MACS {
        (TILES_PER_THREAD * pool_threads()).div_ceil(outer.max(1))
    } else {
        1
    }
}

/// Asks for the `bytes` bytes from `start` to be brought into L1, a cache line at a time. A
/// prefetch is a hint: it reads nothing and cannot fault, so the range may run past the data.
#[inline(always)]
pub(crate) fn prefetch_lines<T>(start: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = start.cast::<i8>();
        for line in (0..bytes).step_by(64) {
            // SAFETY: a prefetch reads nothing and cannot fault, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// Calls `work(item, scratch)` for every item in `0..items`, shared with the rayon pool's
/// workers when `parallel` (see [`share`]).
/// Each worker reuses one scratch buffer of `scratch_len` elements. Inside [`supervised`],
/// items are skipped once the call is cancelled or a scratch buffer cannot be allocated;
/// outside it (direct kernel calls), a failed allocation panics.
pub(crate) fn for_each_item<T, F>(items: usize, scratch_len: usize, parallel: bool, work: F)
where
    T: Element,
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    for_each_item_with(items, parallel, |state| state.scratch::<T>(scratch_len), |item, scratch: &mut Vec<T>| work(item, scratch));
}

/// [`for_each_item`] with the scratch each worker reuses made by `init`, which returns None
/// when it cannot allocate (see [`CallState::scratch`]).
pub(crate) fn for_each_item_with<S, I, F>(items: usize, parallel: bool, init: I, work: F)
where
    S: Send,
    I: Fn(&CallState) -> Option<S> + Send + Sync,
    F: Fn(usize, &mut S) + Send + Sync,
{
    let supervisor = CALL.with(|c| c.borrow().clone());
    let is_supervised = supervisor.is_some();
    let state = supervisor.unwrap_or_else(|| Arc::new(CallState::new(None)));
    let run = |scratch: &mut Option<S>, item: usize| {
        if state.stopping() {
            return;
        }
        if let Some(scratch) = scratch {
            work(item, scratch);
        }
    };
    #[cfg(feature = "rayon")]
    if parallel && items > 1 && pool_threads() > 1 {
        // This thread takes the place of one of the pool's.
        let helpers = (pool_threads() - 1).min(items - 1);
        share::share(items, helpers, &|first, claims| {
            let mut scratch = init(&state);
            claims.run_from(first, |item| run(&mut scratch, item));
        });
    } else {
        sequential(items, init(&state), run);
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = parallel;
        sequential(items, init(&state), run);
    }
    if !is_supervised && state.stopped.load(Ordering::Relaxed) == NO_SCRATCH {
        panic!("cannot allocate a working tile of {} elements", state.scratch_len.load(Ordering::Relaxed));
    }
}

fn sequential<S>(items: usize, mut scratch: Option<S>, run: impl Fn(&mut Option<S>, usize)) {
    for item in 0..items {
        run(&mut scratch, item);
    }
}

/// Threads the kernels may use: the rayon pool's, or 1 in a child forked after the pool
/// started, where the pool's threads do not exist and waiting on them would hang forever.
pub fn pool_threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        if fork::in_forked_child() {
            return 1;
        }
        fork::note_pool_start();
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    1
}

/// True in a child forked after the pool started: it must not wait on the pool's threads,
/// nor on locks that they (or any other thread of the parent) may have held.
#[cfg(feature = "python")]
pub(crate) fn forked_child() -> bool {
    #[cfg(feature = "rayon")]
    {
        fork::in_forked_child()
    }
    #[cfg(not(feature = "rayon"))]
    false
}

/// Fork safety, as in huggingface/tokenizers: a child handler registered with
/// `pthread_atfork` records that this process is a fork of one whose pool had started.
#[cfg(feature = "rayon")]
mod fork {
    use std::sync::atomic::{AtomicBool, Ordering};

    static POOL_STARTED: AtomicBool = AtomicBool::new(false);
    static FORKED_CHILD: AtomicBool = AtomicBool::new(false);

    /// Called before anything that may start the pool's threads.
    pub fn note_pool_start() {
        #[cfg(unix)]
        {
            static REGISTER: std::sync::Once = std::sync::Once::new();
            REGISTER.call_once(|| {
                // SAFETY: `after_fork_in_child` only stores to atomics, which is async-signal-safe
                // as a handler run in the child of a multi-threaded fork must be.
                unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
            });
        }
        POOL_STARTED.store(true, Ordering::SeqCst);
    }

    pub fn in_forked_child() -> bool {
        FORKED_CHILD.load(Ordering::Relaxed)
    }

    #[cfg(unix)]
    extern "C" fn after_fork_in_child() {
        if POOL_STARTED.load(Ordering::SeqCst) {
            FORKED_CHILD.store(true, Ordering::SeqCst);
        }
    }
}

/// Multiply-adds below which thread start-up costs more than it saves.
pub(crate) const PARALLEL_MIN_MACS: f64 = 400_000.0;
/// Work from which one sequence is split into tiles for every thread.
const SPLIT_MIN_MACS: f64 = 700_000.0;
const TILES_PER_THREAD: usize = 2;
