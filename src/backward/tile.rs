//! Register-blocked tiles for the two backward GEMMs: `MR` rows by `NR` columns accumulated
//! in place, `c[r][..NR] += sum_p a(r, p) * b(p)[..NR]`. The general routine reads the left
//! operand where it lies (one offset per row plus a step per reduction index): the backward
//! GEMMs find it in a zero-framed channels-last copy, where packing would cost as much as the
//! arithmetic for short reductions. Where both operands are packed anyway (`dkernel` of wide
//! inputs), a second routine walks them with constant offsets.
//!
//! Each output lane sees its products in reduction order and nothing else, so a result does
//! not depend on how the tiles are cut or which thread runs them.

#[cfg(target_arch = "x86_64")]
use crate::kernel::use_avx2;
use crate::kernel::{Element, Simd};
use num_traits::Float;
#[cfg(target_arch = "x86_64")]
use std::any::Any;

/// Rows of the tallest tile; row tables have this many entries.
pub(crate) const MAX_MR: usize = 6;
/// Columns of the widest tile.
pub(crate) const MAX_NR: usize = 16;

/// The reduction of one tile call. For each `(a_off, b_off)` segment in order and each
/// `v < inner`, row `r` reads `a[a_off + rows[r] + v * a_step]` and the columns read
/// `b[b_off + v * b_step ..][..NR]`.
pub(crate) struct Walk<'a> {
    pub segments: &'a [(isize, isize)],
    pub inner: usize,
    pub a_step: isize,
    pub b_step: isize,
}

/// A tile routine over packed operands: see [`TileKernel::run_packed`].
pub(crate) type PackedTile<T> = unsafe fn(usize, *const T, *const T, &[*mut T; MAX_MR]);

/// One tile routine and its shape.
#[derive(Clone, Copy)]
pub(crate) struct TileKernel<T> {
    pub mr: usize,
    pub nr: usize,
    /// # Safety
    /// Every address the walk describes for rows `0..mr` is readable in `a`, every
    /// `NR`-wide read of `b` is readable, and each `c[r]` (`r < mr`) points at `nr` writable
    /// elements that no other thread touches during the call.
    pub run: unsafe fn(&Walk<'_>, *const T, &[isize; MAX_MR], *const T, &[*mut T; MAX_MR]),
    /// The same sums over `inner` steps of packed operands, where the walk needs no offsets:
    /// A as rows of `mr` values (one per tile row) and B as rows of `nr`, each row right after
    /// the last. Absent for the portable tile.
    ///
    /// # Safety
    /// `a` holds `inner * mr` readable values, `b` holds `inner * nr`, and `c` is as for `run`.
    pub run_packed: Option<PackedTile<T>>,
}

/// The tile routine for `T` under `simd`: explicit AVX2/FMA where the CPU has it, else portable.
pub(crate) fn tile_kernel<T: Element>(simd: Simd) -> TileKernel<T> {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut chosen: Option<TileKernel<T>> = None;
    #[cfg(target_arch = "x86_64")]
    if use_avx2(simd) {
        let slot: &mut dyn Any = &mut chosen;
        if let Some(slot) = slot.downcast_mut::<Option<TileKernel<f32>>>() {
            *slot = Some(TileKernel { mr: 6, nr: 16, run: avx2::f32_6x16, run_packed: Some(avx2::f32_6x16_packed) });
        } else if let Some(slot) = slot.downcast_mut::<Option<TileKernel<f64>>>() {
            *slot = Some(TileKernel { mr: 6, nr: 8, run: avx2::f64_6x8, run_packed: Some(avx2::f64_6x8_packed) });
        }
    }
    let _ = simd;
    chosen.unwrap_or(TileKernel { mr: 4, nr: 8, run: portable_4x8::<T>, run_packed: None })
}

/// Portable tile: fixed-size arrays the compiler keeps in registers.
///
/// # Safety
/// As [`TileKernel::run`] with `mr = 4`, `nr = 8`.
unsafe fn portable_4x8<T: Float>(
    walk: &Walk<'_>,
    a: *const T,
    rows: &[isize; MAX_MR],
    b: *const T,
    c: &[*mut T; MAX_MR],
) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut acc = [[T::zero(); NR]; MR];
    for r in 0..MR {
        for l in 0..NR {
            // SAFETY: c[r] has NR readable elements (caller contract).
            acc[r][l] = unsafe { *c[r].add(l) };
        }
    }
    for &(a_off, b_off) in walk.segments {
        for v in 0..walk.inner as isize {
            let ap = a.wrapping_offset(a_off + v * walk.a_step);
            let bp = b.wrapping_offset(b_off + v * walk.b_step);
            let mut bv = [T::zero(); NR];
            for l in 0..NR {
                // SAFETY: the walk's B reads are NR wide and readable (caller contract).
                bv[l] = unsafe { *bp.add(l) };
            }
            for r in 0..MR {
                // SAFETY: the walk's A address of row r at step v is readable (caller contract).
                let av = unsafe { *ap.wrapping_offset(rows[r]) };
                for l in 0..NR {
                    acc[r][l] = acc[r][l] + av * bv[l];
                }
            }
        }
    }
    for r in 0..MR {
        for l in 0..NR {
            // SAFETY: c[r] has NR writable elements owned by this call (caller contract).
            unsafe { *c[r].add(l) = acc[r][l] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Walk, MAX_MR};
    use std::arch::x86_64::*;

    macro_rules! tile_6x2 {
        ($(#[$doc:meta])* $name:ident, $t:ty, $step:expr, $zero:ident, $load:ident, $broadcast:ident, $fma:ident,
         $store:ident) => {
            $(#[$doc])*
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $name(
                walk: &Walk<'_>,
                a: *const $t,
                rows: &[isize; MAX_MR],
                b: *const $t,
                c: &[*mut $t; MAX_MR],
            ) {
                let mut acc = [[$zero(); 2]; 6];
                for (r, row) in acc.iter_mut().enumerate() {
                    // SAFETY: c[r] has `nr` readable elements (caller contract).
                    unsafe {
                        row[0] = $load(c[r]);
                        row[1] = $load(c[r].add($step));
                    }
                }
                // Row offsets in locals so they live in registers and feed the addressing mode.
                let [r0, r1, r2, r3, r4, r5] = *rows;
                for &(a_off, b_off) in walk.segments {
                    let mut ap = a.wrapping_offset(a_off);
                    let mut bp = b.wrapping_offset(b_off);
                    for _ in 0..walk.inner {
                        // SAFETY: at every step of the walk the `nr`-wide B read and the six row reads
                        // of A are inside their buffers (caller contract).
                        unsafe {
                            let b0 = $load(bp);
                            let b1 = $load(bp.add($step));
                            for (row, off) in acc.iter_mut().zip([r0, r1, r2, r3, r4, r5]) {
                                let av = $broadcast(&*ap.wrapping_offset(off));
                                row[0] = $fma(av, b0, row[0]);
                                row[1] = $fma(av, b1, row[1]);
                            }
                        }
                        ap = ap.wrapping_offset(walk.a_step);
                        bp = bp.wrapping_offset(walk.b_step);
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    // SAFETY: c[r] has `nr` writable elements owned by this call (caller contract).
                    unsafe {
                        $store(c[r], row[0]);
                        $store(c[r].add($step), row[1]);
                    }
                }
            }
        };
    }

    macro_rules! tile_6x2_packed {
        ($(#[$doc:meta])* $name:ident, $t:ty, $step:expr, $load:ident, $broadcast:ident, $fma:ident, $store:ident) => {
            $(#[$doc])*
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $name(inner: usize, a: *const $t, b: *const $t, c: &[*mut $t; MAX_MR]) {
                // SAFETY: c[r] has `nr` readable elements (caller contract).
                let mut acc: [[_; 2]; 6] = std::array::from_fn(|r| unsafe { [$load(c[r]), $load(c[r].add($step))] });
                let (mut ap, mut bp) = (a, b);
                // Step `u` on from `ap` and `bp`: every address is a base plus a constant.
                macro_rules! step {
                    ($u:expr) => {{
                        let b0 = $load(bp.add(2 * $step * $u));
                        let b1 = $load(bp.add(2 * $step * $u + $step));
                        for (r, row) in acc.iter_mut().enumerate() {
                            let av = $broadcast(&*ap.add(6 * $u + r));
                            row[0] = $fma(av, b0, row[0]);
                            row[1] = $fma(av, b1, row[1]);
                        }
                    }};
                }
                // Four steps per pass, then the rest; each lane still sums in step order.
                // SAFETY: every step stays within the `inner` rows of A and B (caller contract).
                unsafe {
                    for _ in 0..inner / 4 {
                        step!(0);
                        step!(1);
                        step!(2);
                        step!(3);
                        ap = ap.add(4 * 6);
                        bp = bp.add(4 * 2 * $step);
                    }
                    for _ in 0..inner % 4 {
                        step!(0);
                        ap = ap.add(6);
                        bp = bp.add(2 * $step);
                    }
                }
                for (r, row) in acc.iter().enumerate() {
                    // SAFETY: c[r] has `nr` writable elements owned by this call (caller contract).
                    unsafe {
                        $store(c[r], row[0]);
                        $store(c[r].add($step), row[1]);
                    }
                }
            }
        };
    }

    tile_6x2_packed!(
        /// # Safety
        /// As [`super::TileKernel::run_packed`] with `mr = 6`, `nr = 16`; the CPU has AVX2 and FMA.
        f32_6x16_packed, f32, 8, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_storeu_ps
    );
    tile_6x2_packed!(
        /// # Safety
        /// As [`super::TileKernel::run_packed`] with `mr = 6`, `nr = 8`; the CPU has AVX2 and FMA.
        f64_6x8_packed, f64, 4, _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_storeu_pd
    );

    tile_6x2!(
        /// # Safety
        /// As [`super::TileKernel::run`] with `mr = 6`, `nr = 16`; the CPU has AVX2 and FMA.
        f32_6x16, f32, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_storeu_ps
    );
    tile_6x2!(
        /// # Safety
        /// As [`super::TileKernel::run`] with `mr = 6`, `nr = 8`; the CPU has AVX2 and FMA.
        f64_6x8, f64, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_storeu_pd
    );
}
