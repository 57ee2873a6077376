//! Register-blocked micro-kernels: an `MR x NR` tile of (output steps x filters).
//! Output row `i` reads its taps straight from a packed input tile,
//! `a[i * row_stride + j * tap_stride + c]`, so strides and dilation need no im2col;
//! B is packed `[tap][c][NR]`. The tile is written as
//! `c[i * ldc + o] = bias[o] + sum_j sum_c a[i, j, c] * b[j, c, o]`, summed in that fixed
//! order so the result never depends on how work is split between threads.

use num_traits::Float;

/// One micro-kernel and its tile size.
#[derive(Clone, Copy)]
pub struct MicroKernel<T> {
    pub mr: usize,
    pub nr: usize,
    /// # Safety
    /// `a[i * a.row + j * a.tap + c]` is readable for `i < mr`, `j < a.taps`, `c < a.channels`;
    /// `b` holds `taps * channels * nr`, `bias` holds `nr` elements, and `c` has `mr` rows of
    /// `nr` writable elements `ldc` apart.
    pub run: unsafe fn(a: Lhs<T>, b: *const T, bias: *const T, c: *mut T, ldc: usize),
}

/// Where a tile's input rows are: `taps` taps of `channels` values per output row.
#[derive(Clone, Copy)]
pub struct Lhs<T> {
    pub ptr: *const T,
    pub row: usize,
    pub tap: usize,
    pub taps: usize,
    pub channels: usize,
}

/// Largest `MR * NR` of any kernel, for stack tiles.
pub const MAX_TILE: usize = 6 * 16;

/// Portable kernel: fixed-size arrays the compiler keeps in registers and vectorises.
///
/// # Safety
/// As [`MicroKernel::run`] with `mr = 4`, `nr = 8`.
pub unsafe fn portable_4x8<T: Float>(a: Lhs<T>, b: *const T, bias: *const T, c: *mut T, ldc: usize) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut acc = [[T::zero(); NR]; MR];
    let mut b = b;
    for j in 0..a.taps {
        for ch in 0..a.channels {
            let mut av = [T::zero(); MR];
            for (i, v) in av.iter_mut().enumerate() {
                // SAFETY: within the rows, taps and channels the caller vouches for.
                *v = unsafe { *a.ptr.add(i * a.row + j * a.tap + ch) };
            }
            // SAFETY: B holds `taps * channels * NR` elements, consumed NR at a time.
            let bp = unsafe { std::slice::from_raw_parts(b, NR) };
            for i in 0..MR {
                for o in 0..NR {
                    acc[i][o] = acc[i][o] + av[i] * bp[o];
                }
            }
            // SAFETY: stays within (or one past) B.
            b = unsafe { b.add(NR) };
        }
    }
    for i in 0..MR {
        for o in 0..NR {
            // SAFETY: `bias` has NR elements; row `i` of `c` has NR writable elements.
            unsafe { *c.add(i * ldc + o) = acc[i][o] + *bias.add(o) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::Lhs;
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::MicroKernel::run`] with `mr = 6`, `nr = 16`; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_6x16(a: Lhs<f32>, b: *const f32, bias: *const f32, c: *mut f32, ldc: usize) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        let mut b = b;
        for j in 0..a.taps {
            // SAFETY: rows 0..6 of tap j are readable for `channels` values (caller's contract).
            let rows: [*const f32; 6] = std::array::from_fn(|i| unsafe { a.ptr.add(i * a.row + j * a.tap) });
            for ch in 0..a.channels {
                // SAFETY: `ch < channels` for every row; B holds 16 values per (tap, channel).
                unsafe {
                    let b0 = _mm256_loadu_ps(b);
                    let b1 = _mm256_loadu_ps(b.add(8));
                    for (row, &ptr) in acc.iter_mut().zip(&rows) {
                        let av = _mm256_broadcast_ss(&*ptr.add(ch));
                        row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                    }
                    b = b.add(16);
                }
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
    pub unsafe fn f64_6x8(a: Lhs<f64>, b: *const f64, bias: *const f64, c: *mut f64, ldc: usize) {
        let mut acc = [[_mm256_setzero_pd(); 2]; 6];
        let mut b = b;
        for j in 0..a.taps {
            // SAFETY: rows 0..6 of tap j are readable for `channels` values (caller's contract).
            let rows: [*const f64; 6] = std::array::from_fn(|i| unsafe { a.ptr.add(i * a.row + j * a.tap) });
            for ch in 0..a.channels {
                // SAFETY: `ch < channels` for every row; B holds 8 values per (tap, channel).
                unsafe {
                    let b0 = _mm256_loadu_pd(b);
                    let b1 = _mm256_loadu_pd(b.add(4));
                    for (row, &ptr) in acc.iter_mut().zip(&rows) {
                        let av = _mm256_broadcast_sd(&*ptr.add(ch));
                        row[0] = _mm256_fmadd_pd(av, b0, row[0]);
                        row[1] = _mm256_fmadd_pd(av, b1, row[1]);
                    }
                    b = b.add(8);
                }
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
