//! Register transposes between `[step][channel]` and `[channel][step]` blocks: channels_first
//! GEMM outputs, gathered as `[step][filter]`, go out as one row of steps per filter, and
//! channels_first input goes into `[step][channel]` tiles, 8x8 elements (4x4 in f64) at a
//! time instead of one strided element at a time.

use std::ops::Range;

/// A block and where its transpose goes: `src[i * src_pitch + j]` (row `i < rows`, column
/// `j < cols`) is written to `dst[j * dst_pitch + i]`.
#[derive(Clone, Copy)]
pub struct Transpose<T> {
    pub src: *const T,
    pub src_pitch: usize,
    pub rows: usize,
    pub cols: usize,
    pub dst: *mut T,
    pub dst_pitch: usize,
    pub walk: Walk,
}

/// Which side is finished a few rows at a time. Rows a power of two apart share a cache set:
/// walking across all of them at once evicts each line before its second half is used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// A few destination rows (source columns) at a time, across all source rows.
    Destination,
    /// A few source rows at a time, across all source columns.
    Source,
}

/// A transpose for one element type and instruction set.
///
/// # Safety
/// `src` holds `rows` rows of `src_pitch >= cols` elements; `dst` has `cols` writable rows of
/// `rows` elements, `dst_pitch` apart, that overlap neither each other nor `src`.
pub type TransposeFn<T> = unsafe fn(Transpose<T>);

/// Rows `rows` by columns `cols` of the block, one element at a time.
///
/// # Safety
/// As [`TransposeFn`], for the given ranges.
unsafe fn transpose_range<T: Copy>(t: &Transpose<T>, rows: Range<usize>, cols: Range<usize>) {
    for j in cols {
        for i in rows.clone() {
            // SAFETY: the caller's contract.
            unsafe { *t.dst.add(j * t.dst_pitch + i) = *t.src.add(i * t.src_pitch + j) };
        }
    }
}

/// Any element type, any CPU.
///
/// # Safety
/// As [`TransposeFn`].
pub unsafe fn transpose_generic<T: Copy>(t: Transpose<T>) {
    // SAFETY: the caller's contract.
    unsafe { transpose_range(&t, 0..t.rows, 0..t.cols) };
}

/// Calls `block(i0, j0)` for every full `width x width` block (rows `i0..`, columns `j0..`)
/// in the order `t.walk` asks, then transposes the edges left one element at a time.
///
/// # Safety
/// As [`TransposeFn`]; `block` transposes the block it is given.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn by_blocks<T: Copy>(t: &Transpose<T>, width: usize, mut block: impl FnMut(usize, usize)) {
    let (rows, cols) = (t.rows / width * width, t.cols / width * width);
    let (outer, inner) = if t.walk == Walk::Destination { (cols, rows) } else { (rows, cols) };
    for a in (0..outer).step_by(width) {
        for b in (0..inner).step_by(width) {
            let (i0, j0) = if t.walk == Walk::Destination { (b, a) } else { (a, b) };
            block(i0, j0);
        }
    }
    // SAFETY: the caller's contract, for the edges left.
    unsafe {
        transpose_range(t, rows..t.rows, 0..cols);
        transpose_range(t, 0..t.rows, cols..t.cols);
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::{by_blocks, Transpose};
    use std::arch::x86_64::*;

    /// 8 rows x 8 columns per register transpose; the edges one element at a time.
    ///
    /// # Safety
    /// As [`super::TransposeFn`]; the CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f32_8x8(t: Transpose<f32>) {
        // SAFETY: the caller's contract; each block's rows i0..i0+8 and columns j0..j0+8 are
        // inside it.
        unsafe {
            by_blocks(&t, 8, |i0, j0| {
                let src = t.src.add(i0 * t.src_pitch + j0);
                let v: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(src.add(k * t.src_pitch)));
                let dst = t.dst.add(j0 * t.dst_pitch + i0);
                for (k, column) in transpose_8x8(v).into_iter().enumerate() {
                    _mm256_storeu_ps(dst.add(k * t.dst_pitch), column);
                }
            })
        }
    }

    /// 4 rows x 4 columns per register transpose; the edges one element at a time.
    ///
    /// # Safety
    /// As [`super::TransposeFn`]; the CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn f64_4x4(t: Transpose<f64>) {
        // SAFETY: the caller's contract; each block's rows i0..i0+4 and columns j0..j0+4 are
        // inside it.
        unsafe {
            by_blocks(&t, 4, |i0, j0| {
                let src = t.src.add(i0 * t.src_pitch + j0);
                let [a, b, c, d]: [__m256d; 4] = std::array::from_fn(|k| _mm256_loadu_pd(src.add(k * t.src_pitch)));
                let (ab_low, ab_high) = (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b));
                let (cd_low, cd_high) = (_mm256_unpacklo_pd(c, d), _mm256_unpackhi_pd(c, d));
                let transposed = [
                    _mm256_permute2f128_pd(ab_low, cd_low, 0x20),
                    _mm256_permute2f128_pd(ab_high, cd_high, 0x20),
                    _mm256_permute2f128_pd(ab_low, cd_low, 0x31),
                    _mm256_permute2f128_pd(ab_high, cd_high, 0x31),
                ];
                let dst = t.dst.add(j0 * t.dst_pitch + i0);
                for (k, column) in transposed.into_iter().enumerate() {
                    _mm256_storeu_pd(dst.add(k * t.dst_pitch), column);
                }
            })
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

#[cfg(test)]
mod tests {
    use super::{Transpose, TransposeFn, Walk};
    use crate::kernel::{Element, Simd};

    /// Every block shape up to 19 x 19 (full registers and edges), padded source rows and
    /// destination rows, both walks: each destination element is its source element, and the
    /// padding around the destination rows is untouched.
    fn check<T: Element>(transpose: TransposeFn<T>) {
        let value = |i: usize, j: usize| T::from(1000 * i + j + 1).unwrap();
        for rows in 0..20 {
            for cols in 0..20 {
                for walk in [Walk::Destination, Walk::Source] {
                    let (src_pitch, dst_pitch) = (cols + 3, rows + 5);
                    let src: Vec<T> = (0..rows * src_pitch).map(|k| value(k / src_pitch, k % src_pitch)).collect();
                    let mut dst = vec![T::neg_infinity(); cols * dst_pitch];
                    let block = Transpose { src: src.as_ptr(), src_pitch, rows, cols, dst: dst.as_mut_ptr(), dst_pitch, walk };
                    // SAFETY: src has `rows` rows of src_pitch >= cols, dst `cols` rows of dst_pitch >= rows.
                    unsafe { transpose(block) };
                    for j in 0..cols {
                        for k in 0..dst_pitch {
                            let expected = if k < rows { value(k, j) } else { T::neg_infinity() };
                            assert_eq!(dst[j * dst_pitch + k], expected, "{rows}x{cols}, row {j}, element {k}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn transposes_every_shape_on_every_instruction_set() {
        for simd in [Simd::Auto, Simd::Avx2, Simd::Portable] {
            check::<f32>(f32::transpose(simd));
            check::<f64>(f64::transpose(simd));
        }
    }
}
