//! channels_first GEMM output: a filter block gathered as `[step][filter]` goes out as one
//! contiguous row of steps per filter, through register transposes instead of one strided
//! element at a time.

use std::ops::Range;

/// A gathered block and where it goes: element `block[i * pitch + j]` (step `i < steps`,
/// filter `j < filters`) is written to `out[j * row_stride + i]`.
#[derive(Clone, Copy)]
pub struct Rows<T> {
    pub block: *const T,
    pub pitch: usize,
    pub steps: usize,
    pub filters: usize,
    pub out: *mut T,
    pub row_stride: usize,
    pub walk: Walk,
}

/// Which rows are finished one group at a time. Rows a power of two apart share a cache set:
/// walking across all of them at once evicts each line before its second half is used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// A few output rows (filters) at a time, down all steps.
    Destination,
    /// A few source rows (steps of the block) at a time, across all filters.
    Source,
}

/// A transposing writer for one element type and instruction set.
///
/// # Safety
/// `block` holds `steps` rows of `pitch >= filters` elements; `out` has `filters` writable
/// rows of `steps` elements, `row_stride` apart, that overlap neither each other nor `block`.
pub type WriteRows<T> = unsafe fn(Rows<T>);

/// Steps `steps` of filters `filters`, one element at a time.
///
/// # Safety
/// As [`WriteRows`], for the given ranges.
unsafe fn write_range<T: Copy>(r: &Rows<T>, steps: Range<usize>, filters: Range<usize>) {
    for j in filters {
        for i in steps.clone() {
            // SAFETY: the caller's contract.
            unsafe { *r.out.add(j * r.row_stride + i) = *r.block.add(i * r.pitch + j) };
        }
    }
}

/// Any element type, any CPU.
///
/// # Safety
/// As [`WriteRows`].
pub unsafe fn write_rows_generic<T: Copy>(r: Rows<T>) {
    // SAFETY: the caller's contract.
    unsafe { write_range(&r, 0..r.steps, 0..r.filters) };
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::{write_range, Rows, Walk};
    use std::arch::x86_64::*;

    /// 8 steps x 8 filters per transpose; the edges one element at a time.
    ///
    /// # Safety
    /// As [`super::WriteRows`]; the CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_8x8(r: Rows<f32>) {
        let (steps, filters) = (r.steps / 8 * 8, r.filters / 8 * 8);
        let (outer, inner) = if r.walk == Walk::Destination { (filters, steps) } else { (steps, filters) };
        for a in (0..outer).step_by(8) {
            for b in (0..inner).step_by(8) {
                let (i0, j0) = if r.walk == Walk::Destination { (b, a) } else { (a, b) };
                // SAFETY: steps i0..i0+8 and filters j0..j0+8 are inside the block and rows.
                unsafe {
                    let src = r.block.add(i0 * r.pitch + j0);
                    let v: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(src.add(k * r.pitch)));
                    let dst = r.out.add(j0 * r.row_stride + i0);
                    for (k, column) in transpose_8x8(v).into_iter().enumerate() {
                        _mm256_storeu_ps(dst.add(k * r.row_stride), column);
                    }
                }
            }
        }
        // SAFETY: the caller's contract, for the edges left.
        unsafe {
            write_range(&r, steps..r.steps, 0..filters);
            write_range(&r, 0..r.steps, filters..r.filters);
        }
    }

    /// 4 steps x 4 filters per transpose; the edges one element at a time.
    ///
    /// # Safety
    /// As [`super::WriteRows`]; the CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f64_4x4(r: Rows<f64>) {
        let (steps, filters) = (r.steps / 4 * 4, r.filters / 4 * 4);
        let (outer, inner) = if r.walk == Walk::Destination { (filters, steps) } else { (steps, filters) };
        for a in (0..outer).step_by(4) {
            for b in (0..inner).step_by(4) {
                let (i0, j0) = if r.walk == Walk::Destination { (b, a) } else { (a, b) };
                // SAFETY: steps i0..i0+4 and filters j0..j0+4 are inside the block and rows.
                unsafe {
                    let src = r.block.add(i0 * r.pitch + j0);
                    let [a, b, c, d]: [__m256d; 4] = std::array::from_fn(|k| _mm256_loadu_pd(src.add(k * r.pitch)));
                    let (ab_low, ab_high) = (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b));
                    let (cd_low, cd_high) = (_mm256_unpacklo_pd(c, d), _mm256_unpackhi_pd(c, d));
                    let columns = [
                        _mm256_permute2f128_pd(ab_low, cd_low, 0x20),
                        _mm256_permute2f128_pd(ab_high, cd_high, 0x20),
                        _mm256_permute2f128_pd(ab_low, cd_low, 0x31),
                        _mm256_permute2f128_pd(ab_high, cd_high, 0x31),
                    ];
                    let dst = r.out.add(j0 * r.row_stride + i0);
                    for (k, column) in columns.into_iter().enumerate() {
                        _mm256_storeu_pd(dst.add(k * r.row_stride), column);
                    }
                }
            }
        }
        // SAFETY: the caller's contract, for the edges left.
        unsafe {
            write_range(&r, steps..r.steps, 0..filters);
            write_range(&r, 0..r.steps, filters..r.filters);
        }
    }

    /// Rows of 8 lanes in, columns out.
    #[inline(always)]
    unsafe fn transpose_8x8(v: [__m256; 8]) -> [__m256; 8] {
        // SAFETY: register operations only; AVX is enabled by the caller.
        unsafe {
            let t: [__m256; 8] = std::array::from_fn(|k| {
                let (a, b) = (v[k / 2 * 2], v[k / 2 * 2 + 1]);
                if k % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // Quarters: lanes 0-1 and 2-3 of each 128-bit half, from row pairs (0,1)+(2,3), (4,5)+(6,7).
            let q = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            [
                _mm256_permute2f128_ps::<0x20>(q[0], q[4]),
                _mm256_permute2f128_ps::<0x20>(q[1], q[5]),
                _mm256_permute2f128_ps::<0x20>(q[2], q[6]),
                _mm256_permute2f128_ps::<0x20>(q[3], q[7]),
                _mm256_permute2f128_ps::<0x31>(q[0], q[4]),
                _mm256_permute2f128_ps::<0x31>(q[1], q[5]),
                _mm256_permute2f128_ps::<0x31>(q[2], q[6]),
                _mm256_permute2f128_ps::<0x31>(q[3], q[7]),
            ]
        }
    }
}
