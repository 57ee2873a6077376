//! Register-blocked GEMM micro-kernels: an `MR x NR` output tile accumulated over `k`
//! packed steps. A is packed `[k][MR]`, B `[k][NR]`; the tile is written as
//! `c[i * ldc + j] = bias[j] + sum_p a[p][i] * b[p][j]`, summing `p` in order so the
//! result never depends on how work is split between threads.

use num_traits::Float;

/// One micro-kernel and its tile size.
#[derive(Clone, Copy)]
pub struct MicroKernel<T> {
    pub mr: usize,
    pub nr: usize,
    /// # Safety
    /// `a` holds `k * mr`, `b` holds `k * nr`, `bias` holds `nr` readable elements, and
    /// `c` has `mr` rows of `nr` writable elements `ldc` apart.
    pub run: unsafe fn(k: usize, a: *const T, b: *const T, bias: *const T, c: *mut T, ldc: usize),
}

/// Largest `MR * NR` of any kernel, for stack tiles.
pub const MAX_TILE: usize = 6 * 16;

/// Portable kernel: fixed-size arrays the compiler keeps in registers and vectorises.
///
/// # Safety
/// As [`MicroKernel::run`] with `mr = 4`, `nr = 8`.
pub unsafe fn portable_4x8<T: Float>(k: usize, a: *const T, b: *const T, bias: *const T, c: *mut T, ldc: usize) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut acc = [[T::zero(); NR]; MR];
    // SAFETY: the caller guarantees `k * MR` elements at `a` and `k * NR` at `b`.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, k * MR), std::slice::from_raw_parts(b, k * NR)) };
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = acc[i][j] + ap[i] * bp[j];
            }
        }
    }
    for i in 0..MR {
        for j in 0..NR {
            // SAFETY: `bias` has NR elements; row `i` of `c` has NR writable elements.
            unsafe { *c.add(i * ldc + j) = acc[i][j] + *bias.add(j) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::MicroKernel::run`] with `mr = 6`, `nr = 16`; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_6x16(k: usize, a: *const f32, b: *const f32, bias: *const f32, c: *mut f32, ldc: usize) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        let (mut a, mut b) = (a, b);
        for _ in 0..k {
            // SAFETY: each step reads 6 packed A values and 16 packed B values, within `k` steps.
            unsafe {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(i));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
                a = a.add(6);
                b = b.add(16);
            }
        }
        // SAFETY: `bias` has 16 elements and each of the 6 rows of `c` has 16 writable ones.
        unsafe {
            let bias0 = _mm256_loadu_ps(bias);
            let bias1 = _mm256_loadu_ps(bias.add(8));
            for (i, row) in acc.iter().enumerate() {
                _mm256_storeu_ps(c.add(i * ldc), _mm256_add_ps(row[0], bias0));
                _mm256_storeu_ps(c.add(i * ldc + 8), _mm256_add_ps(row[1], bias1));
            }
        }
    }

    /// # Safety
    /// As [`super::MicroKernel::run`] with `mr = 6`, `nr = 8`; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f64_6x8(k: usize, a: *const f64, b: *const f64, bias: *const f64, c: *mut f64, ldc: usize) {
        let mut acc = [[_mm256_setzero_pd(); 2]; 6];
        let (mut a, mut b) = (a, b);
        for _ in 0..k {
            // SAFETY: each step reads 6 packed A values and 8 packed B values, within `k` steps.
            unsafe {
                let b0 = _mm256_loadu_pd(b);
                let b1 = _mm256_loadu_pd(b.add(4));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_sd(&*a.add(i));
                    row[0] = _mm256_fmadd_pd(av, b0, row[0]);
                    row[1] = _mm256_fmadd_pd(av, b1, row[1]);
                }
                a = a.add(6);
                b = b.add(8);
            }
        }
        // SAFETY: `bias` has 8 elements and each of the 6 rows of `c` has 8 writable ones.
        unsafe {
            let bias0 = _mm256_loadu_pd(bias);
            let bias1 = _mm256_loadu_pd(bias.add(4));
            for (i, row) in acc.iter().enumerate() {
                _mm256_storeu_pd(c.add(i * ldc), _mm256_add_pd(row[0], bias0));
                _mm256_storeu_pd(c.add(i * ldc + 4), _mm256_add_pd(row[1], bias1));
            }
        }
    }
}
