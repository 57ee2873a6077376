//! Loops vectorised across contiguous channels or filters.

use crate::kernel::Element;
#[cfg(target_arch = "x86_64")]
use std::any::TypeId;
use std::array;

/// `acc[c] += row[c] * w[c]` over the length of `acc`; fused multiply-add when `fused`.
pub(crate) fn accumulate<T: Element>(acc: &mut [T], row: &[T], w: &[T], fused: bool) {
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: `fused` is only true when AVX2 and FMA were detected.
        unsafe { accumulate_fma(acc, row, w) };
        return;
    }
    let _ = fused;
    for ((a, &r), &k) in acc.iter_mut().zip(row).zip(w) {
        *a = *a + r * k;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_fma<T: Element>(acc: &mut [T], row: &[T], w: &[T]) {
    for ((a, &r), &k) in acc.iter_mut().zip(row).zip(w) {
        *a = r.mul_add(k, *a);
    }
}

/// `acc[c] += sum_{v < count} x[v * x_step + c] * y[v * y_step + c]`, summing `v` in order.
pub(crate) fn sweep<T: Element>(
    acc: &mut [T],
    x: &[T],
    x_step: usize,
    y: &[T],
    y_step: usize,
    count: usize,
    fused: bool,
) {
    let width = acc.len();
    for v in 0..count {
        accumulate(acc, &x[v * x_step..][..width], &y[v * y_step..][..width], fused);
    }
}

/// Four dot products that share their weights: for `r < 4`,
/// `out[r] = sum over segments (y0, w0), in order, of sum_{o < len} y[y0 + r * ld + o] * w[w0 + o]`.
/// Partial sums are kept per vector lane and added up in lane order at the end, so the
/// order depends on the shapes alone.
pub(crate) fn dot4<T: Element>(
    y: &[T],
    ld: usize,
    w: &[T],
    segments: &[(usize, usize)],
    len: usize,
    fused: bool,
) -> [T; 4] {
    #[cfg(target_arch = "x86_64")]
    if fused {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: T is f32, so the slices and the result have the same layout; `fused`
            // is only true when AVX2 and FMA were detected.
            let sums = unsafe { avx2::dot4_f32(cast(y), ld, cast(w), segments, len) };
            return sums.map(|v| T::from(v).unwrap_or_else(T::nan));
        }
        if TypeId::of::<T>() == TypeId::of::<f64>() {
            // SAFETY: as above, with T = f64.
            let sums = unsafe { avx2::dot4_f64(cast(y), ld, cast(w), segments, len) };
            return sums.map(|v| T::from(v).unwrap_or_else(T::nan));
        }
    }
    let _ = fused;
    dot4_portable(y, ld, w, segments, len)
}

/// Reinterprets a slice whose element type is known (by `TypeId`) to be `U`.
///
/// # Safety
/// `T` and `U` are the same type.
#[cfg(target_arch = "x86_64")]
unsafe fn cast<T, U>(s: &[T]) -> &[U] {
    // SAFETY: same type, so same size, alignment and validity (caller contract).
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<U>(), s.len()) }
}

/// Eight lanes per row, plain multiply and add.
fn dot4_portable<T: Element>(y: &[T], ld: usize, w: &[T], segments: &[(usize, usize)], len: usize) -> [T; 4] {
    const L: usize = 8;
    let mut acc = [[T::zero(); L]; 4];
    for &(y0, w0) in segments {
        let ws = &w[w0..][..len];
        for (r, lanes) in acc.iter_mut().enumerate() {
            let row = &y[y0 + r * ld..][..len];
            for (o, (&a, &b)) in row.iter().zip(ws).enumerate() {
                lanes[o % L] = lanes[o % L] + a * b;
            }
        }
    }
    array::from_fn(|r| acc[r].iter().fold(T::zero(), |s, &v| s + v))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::array;

    macro_rules! dot4 {
        ($(#[$doc:meta])* $name:ident, $t:ty, $step:expr, $zero:ident, $load:ident, $fma:ident, $store:ident) => {
            $(#[$doc])*
            ///
            /// # Safety
            /// The CPU has AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $name(
                y: &[$t],
                ld: usize,
                w: &[$t],
                segments: &[(usize, usize)],
                len: usize,
            ) -> [$t; 4] {
                let mut acc = [[$zero(); 2]; 4];
                let mut tail = [0.0 as $t; 4];
                let full = len - len % (2 * $step);
                for &(y0, w0) in segments {
                    // One check per segment instead of one per load.
                    if y0 + 3 * ld + len > y.len() || w0 + len > w.len() {
                        debug_assert!(false, "dot segment out of bounds");
                        continue;
                    }
                    // SAFETY: checked just above: four rows of `len` from y0, `ld` apart, lie in `y`,
                    // and `len` weights from w0 lie in `w`; every access below is below `len`.
                    unsafe {
                        let wp = w.as_ptr().add(w0);
                        let rows = [
                            y.as_ptr().add(y0),
                            y.as_ptr().add(y0 + ld),
                            y.as_ptr().add(y0 + 2 * ld),
                            y.as_ptr().add(y0 + 3 * ld),
                        ];
                        let mut o = 0;
                        while o < full {
                            let w0 = $load(wp.add(o));
                            let w1 = $load(wp.add(o + $step));
                            for (a, row) in acc.iter_mut().zip(rows) {
                                a[0] = $fma($load(row.add(o)), w0, a[0]);
                                a[1] = $fma($load(row.add(o + $step)), w1, a[1]);
                            }
                            o += 2 * $step;
                        }
                        for (t, row) in tail.iter_mut().zip(rows) {
                            for o in full..len {
                                *t = (*row.add(o)).mul_add(*wp.add(o), *t);
                            }
                        }
                    }
                }
                array::from_fn(|r| {
                    let mut lanes = [0.0 as $t; 2 * $step];
                    // SAFETY: `lanes` has room for two full-register stores.
                    unsafe {
                        $store(lanes.as_mut_ptr(), acc[r][0]);
                        $store(lanes.as_mut_ptr().add($step), acc[r][1]);
                    }
                    lanes.iter().fold(0.0, |s, &v| s + v) + tail[r]
                })
            }
        };
    }

    dot4!(
        /// Sixteen lanes per row in two registers; filters past the last multiple of 16 go to a
        /// scalar sum per row, added after the lanes.
        dot4_f32, f32, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_storeu_ps
    );
    dot4!(
        /// As [`dot4_f32`] with eight lanes of `f64` per row.
        dot4_f64, f64, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_fmadd_pd, _mm256_storeu_pd
    );
}
