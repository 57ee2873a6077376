//! The machine's FMA throughput, measured the same way the kernels compute, so reports can
//! state efficiency against what this CPU delivers right now.

use std::time::Instant;

/// GFLOP/s of independent f32 fused multiply-adds on `threads` threads for about `seconds`.
/// Counts 2 FLOP per lane. Returns 0 where AVX2/FMA is absent.
pub fn fma_peak_gflops(seconds: f64, threads: usize) -> f64 {
    if !super::has_avx2_fma() {
        return 0.0;
    }
    let threads = threads.max(1);
    let run = || {
        let start = Instant::now();
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut flops = 0.0;
        while start.elapsed().as_secs_f64() < seconds {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: guarded by the AVX2/FMA detection above.
            unsafe {
                flops += fma_block(1 << 20)
            };
        }
        flops / start.elapsed().as_secs_f64()
    };
    let total: f64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(run)).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    total / 1e9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_block(iterations: usize) -> f64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 10];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut sink = [0.0_f32; 8];
    let total = acc.iter().fold(_mm256_set1_ps(0.0), |s, v| _mm256_add_ps(s, *v));
    // SAFETY: `sink` has 8 floats.
    unsafe { _mm256_storeu_ps(sink.as_mut_ptr(), total) };
    std::hint::black_box(sink);
    (iterations * 10 * 8 * 2) as f64
}
