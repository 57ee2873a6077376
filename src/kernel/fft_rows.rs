//! The FFT path's outputs written as channels_last rows: each row of a run of [`FILTERS`]
//! filters takes one step from each pair of filters' inverse transform, whose real part is
//! the first filter's output and whose imaginary part the second's.

use super::Element;
use realfft::num_complex::Complex;

/// Filters written together, a channels_last row at a time.
pub const FILTERS: usize = 16;
/// Pairs of filters, one inverse transform each.
pub const PAIRS: usize = FILTERS / 2;

/// Writes one row per step of the columns (all of one length): filters `2p` and `2p + 1` of
/// row `i` are the real and imaginary parts of `columns[p][i]` plus their bias, rounded once to
/// `T`, the first `width` of them at `dst + i * pitch`; around the caches when `stream`.
///
/// # Safety
/// Each row's `width` elements are writable; `stream` only when AVX2 was detected.
pub type RowsFn<T> = unsafe fn(columns: &[&[Complex<f64>]; PAIRS], bias: &[f64; FILTERS], width: usize, dst: *mut T, pitch: usize, stream: bool);

/// One rounding to `T`, bias included.
pub fn to_output<T: Element>(v: f64, bias: f64) -> T {
    T::from(v + bias).unwrap_or_else(T::nan)
}

/// [`RowsFn`] for any type and width.
///
/// # Safety
/// As [`RowsFn`].
pub unsafe fn rows_generic<T: Element>(columns: &[&[Complex<f64>]; PAIRS], bias: &[f64; FILTERS], width: usize, dst: *mut T, pitch: usize, stream: bool) {
    let mut row = [T::zero(); FILTERS];
    for i in 0..columns[0].len() {
        for (pair, column) in columns.iter().enumerate() {
            let v = column[i];
            row[2 * pair] = to_output(v.re, bias[2 * pair]);
            row[2 * pair + 1] = to_output(v.im, bias[2 * pair + 1]);
        }
        // SAFETY: the caller's contract for row i.
        unsafe { write_row(dst.add(i * pitch), &row[..width], stream) };
    }
}

/// Copies `row` to `dst`, around the caches when `stream` and `dst` allows 16-byte stores.
///
/// # Safety
/// `dst` addresses `row.len()` writable elements.
unsafe fn write_row<T: Copy>(dst: *mut T, row: &[T], stream: bool) {
    let bytes = std::mem::size_of_val(row);
    #[cfg(target_arch = "x86_64")]
    if stream && (dst as usize).is_multiple_of(16) && bytes.is_multiple_of(16) {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let (src, dst) = (row.as_ptr().cast::<__m128i>(), dst.cast::<__m128i>());
        for i in 0..bytes / 16 {
            // SAFETY: both ranges hold `bytes` bytes; `dst` is 16-byte aligned.
            unsafe { _mm_stream_si128(dst.add(i), _mm_loadu_si128(src.add(i))) };
        }
        return;
    }
    let _ = (stream, bytes);
    // SAFETY: the caller's contract; `row` is a separate buffer.
    unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst, row.len()) };
}

/// Whole rows of [`FILTERS`] filters in registers: four pairs' steps side by side make four
/// f64 lanes, a quarter of the row, with the same one rounding as [`to_output`].
#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::{rows_generic, Complex, FILTERS, PAIRS};
    use std::arch::x86_64::*;

    macro_rules! rows {
        ($name:ident, $t:ty, |$at:ident, $values:ident, $aligned:ident| $store:block) => {
            /// [`super::RowsFn`] for this type.
            ///
            /// # Safety
            /// As [`super::RowsFn`]; AVX2 is available.
            #[target_feature(enable = "avx2")]
            pub unsafe fn $name(columns: &[&[Complex<f64>]; PAIRS], bias: &[f64; FILTERS], width: usize, dst: *mut $t, pitch: usize, stream: bool) {
                let steps = columns[0].len();
                if width != FILTERS || columns.iter().any(|column| column.len() != steps) {
                    // SAFETY: the caller's contract.
                    return unsafe { rows_generic(columns, bias, width, dst, pitch, stream) };
                }
                let mut biases = [_mm256_setzero_pd(); FILTERS / 4];
                for (quarter, b) in biases.iter_mut().enumerate() {
                    // SAFETY: four of the FILTERS biases.
                    *b = unsafe { _mm256_loadu_pd(bias.as_ptr().add(4 * quarter)) };
                }
                for i in 0..steps {
                    // SAFETY: row i has FILTERS writable elements (caller); every column has `steps`
                    // values; streamed quarters are 16-byte aligned.
                    unsafe {
                        let row = dst.add(i * pitch);
                        let $aligned = stream && (row as usize).is_multiple_of(16);
                        for (quarter, b) in biases.iter().enumerate() {
                            let low = _mm_loadu_pd(columns[2 * quarter].as_ptr().add(i).cast());
                            let high = _mm_loadu_pd(columns[2 * quarter + 1].as_ptr().add(i).cast());
                            let ($at, $values) = (row.add(4 * quarter), _mm256_add_pd(_mm256_set_m128d(high, low), *b));
                            $store
                        }
                    }
                }
            }
        };
    }

    rows!(f32_rows, f32, |at, values, aligned| {
        let values = _mm256_cvtpd_ps(values);
        if aligned {
            _mm_stream_ps(at, values);
        } else {
            _mm_storeu_ps(at, values);
        }
    });

    rows!(f64_rows, f64, |at, values, aligned| {
        if aligned {
            _mm_stream_pd(at, _mm256_castpd256_pd128(values));
            _mm_stream_pd(at.add(2), _mm256_extractf128_pd::<1>(values));
        } else {
            _mm256_storeu_pd(at, values);
        }
    });
}
