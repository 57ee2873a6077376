//! Register-blocked micro-kernels: an `MR x NR` tile of (output steps x filters).
//! Output row `i` reads its taps straight from a packed input tile,
//! `a[i * row_stride + j * tap_stride + c]`, so strides and dilation need no im2col;
//! B is packed `[tap][c][NR]`, taps `weights_tap` elements apart. The tile is written as
//! `c[i * ldc + o] = bias[o] + sum_j sum_c a[i, j, c] * b[j, c, o]`, summed in that fixed
//! order so the result never depends on how work is split between threads. The `ACC` kernels
//! start each sum from the value already in `c`, so that one sum can go on over several
//! calls, each over a slice of the channels.

use num_traits::Float;

/// A micro-kernel entry point; see [`MicroKernel::run`].
pub type KernelFn<T> = unsafe fn(a: Lhs<T>, b: *const T, bias: *const T, c: *mut T, ldc: usize, strip: Strip);

/// One micro-kernel and its tile size.
#[derive(Clone, Copy)]
pub struct MicroKernel<T> {
    pub mr: usize,
    pub nr: usize,
    /// # Safety
    /// For each tile `s < strip.count`, with `a`, `b`, `bias` and `c` advanced by `s` times
    /// the strip's steps: `a[i * a.row + j * a.tap + c]` is readable for `i < mr`,
    /// `j < a.taps`, `c < a.channels`; `b` holds `channels * nr` elements from each
    /// `j * a.weights_tap`, `bias` holds `nr` elements, and `c` has `mr` rows of `nr` writable
    /// elements `ldc` apart.
    pub run: KernelFn<T>,
    /// `run` with non-temporal stores where the tile has them (else `run` itself); needs every
    /// tile's `c` and `ldc * size_of::<T>()` 16-byte aligned.
    pub run_stream: KernelFn<T>,
    /// `run` adding to the sums already in `c` (which must be readable as well): the next
    /// slice of channels of a sum.
    pub run_acc: KernelFn<T>,
}

/// Tiles one kernel call computes in a row, and how far (in elements) each pointer moves from
/// one to the next. A call per tile costs more than the tile itself when the sums are short.
#[derive(Clone, Copy, Debug)]
pub struct Strip {
    pub count: usize,
    pub a: usize,
    pub b: usize,
    pub bias: usize,
    pub c: usize,
    /// Input each tile asks for while it computes, for a tile after it.
    pub ahead: Ahead,
}

impl Strip {
    /// A single tile.
    pub const ONE: Strip = Strip { count: 1, a: 0, b: 0, bias: 0, c: 0, ahead: Ahead::NONE };
}

/// Input rows a tile of a strip prefetches: `rows` runs of `bytes` bytes, `pitch` elements
/// apart, from `start` elements past the tile's own input. Each tile asks for its share of
/// what comes next: a hundred prefetches at once fill the queue of outstanding misses, and the
/// loads the tile itself needs wait behind them (measured: up to 40% slower on grouped shapes
/// whose input is not in cache).
#[derive(Clone, Copy, Debug)]
pub struct Ahead {
    pub start: usize,
    pub rows: usize,
    pub pitch: usize,
    pub bytes: usize,
}

impl Ahead {
    /// Nothing to prefetch.
    pub const NONE: Ahead = Ahead { start: 0, rows: 0, pitch: 0, bytes: 0 };

    /// Asks for the share of the tile whose input starts at `a`. Prefetches do not fault: no
    /// bounds to check.
    #[inline(always)]
    pub fn prefetch<T>(&self, a: *const T) {
        let first = a.wrapping_add(self.start);
        for r in 0..self.rows {
            crate::kernel::prefetch_lines(first.wrapping_add(r * self.pitch), self.bytes);
        }
    }
}

/// Where a tile's input rows are: `taps` taps of `channels` values per output row, and how
/// far apart (in elements of B) each tap's weights start.
#[derive(Clone, Copy)]
pub struct Lhs<T> {
    pub ptr: *const T,
    pub row: usize,
    pub tap: usize,
    pub taps: usize,
    pub channels: usize,
    pub weights_tap: usize,
}

/// Most input bytes prefetched ahead of one tile or panel: more would push out of L1 the
/// weights and rows still in use (measured: 24 KiB per tile made w2v_mid slower).
pub const PREFETCH_MAX_BYTES: usize = 8 * 1024;

/// Largest `MR * NR` of any kernel, for stack tiles.
pub const MAX_TILE: usize = 6 * 32;
/// Rows of the narrow (one-register) tiles.
pub const NARROW_MR: usize = 12;
const _: () = assert!(NARROW_MR * 8 <= MAX_TILE);

/// Portable kernel: fixed-size arrays the compiler keeps in registers and vectorises.
///
/// # Safety
/// As [`MicroKernel::run`] (or `run_acc` with `ACC`) with `mr = 4`, `nr = 8`.
pub unsafe fn portable_4x8<T: Float, const ACC: bool>(a: Lhs<T>, b: *const T, bias: *const T, c: *mut T, ldc: usize, strip: Strip) {
    for s in 0..strip.count {
        // SAFETY: tile `s` of the strip, which the caller vouches for.
        unsafe {
            let a = Lhs { ptr: a.ptr.add(s * strip.a), ..a };
            portable_tile_4x8::<T, ACC>(a, b.add(s * strip.b), bias.add(s * strip.bias), c.add(s * strip.c), ldc);
        }
    }
}

/// # Safety
/// As [`portable_4x8`] for one tile.
unsafe fn portable_tile_4x8<T: Float, const ACC: bool>(a: Lhs<T>, b: *const T, bias: *const T, c: *mut T, ldc: usize) {
    const MR: usize = 4;
    const NR: usize = 8;
    // SAFETY: with ACC, `c` holds the earlier slices' sums (the caller's contract).
    let mut acc: [[T; NR]; MR] =
        std::array::from_fn(|i| std::array::from_fn(|o| if ACC { unsafe { *c.add(i * ldc + o) } } else { T::zero() }));
    for j in 0..a.taps {
        // SAFETY: tap j's weights start `j * weights_tap` into B (caller's contract).
        let mut b = unsafe { b.add(j * a.weights_tap) };
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
pub mod x86 {
    use super::Lhs;
    use std::arch::x86_64::*;

    macro_rules! kernel_6x2 {
        ($features:literal, $name:ident, $tile:ident, $t:ty, $half:expr, $zero:ident, $load:ident, $broadcast:ident, $fma:ident, $add:ident,
         $store:ident, $stream:ident, $cast_low:ident, $high:ident, $quarter:expr, $stream_whole:ident) => {
            /// A 6-step x two-register tile. With `STREAM`, results go to memory with
            /// non-temporal stores (the caller guarantees 16-byte aligned rows), for outputs
            /// too large to stay in cache, whose write-allocate reads would double the traffic.
            ///
            /// With `ACC`, sums start from the values in `c` (see [`super::MicroKernel::run_acc`]).
            ///
            /// # Safety
            /// As [`super::MicroKernel::run`] with `mr = 6`, `nr = 2 * half`; the CPU has the
            /// features the function is compiled for (AVX2 and FMA, and AVX-512 for zmm tiles).
            #[target_feature(enable = $features)]
            pub unsafe fn $name<const STREAM: bool, const ACC: bool>(a: Lhs<$t>, b: *const $t, bias: *const $t, c: *mut $t, ldc: usize, strip: super::Strip) {
                for s in 0..strip.count {
                    // SAFETY: tile `s` of the strip, which the caller vouches for.
                    unsafe {
                        let a = Lhs { ptr: a.ptr.add(s * strip.a), ..a };
                        strip.ahead.prefetch(a.ptr);
                        $tile::<STREAM, ACC>(a, b.add(s * strip.b), bias.add(s * strip.bias), c.add(s * strip.c), ldc);
                    }
                }
            }

            /// One tile of the strip above.
            ///
            /// # Safety
            /// As the strip function, for one tile.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $tile<const STREAM: bool, const ACC: bool>(a: Lhs<$t>, b: *const $t, bias: *const $t, c: *mut $t, ldc: usize) {
                // SAFETY: with ACC, the 6 rows of `c` hold the earlier slices' sums (caller's contract).
                let mut acc: [[_; 2]; 6] = std::array::from_fn(|i| {
                    if ACC { unsafe { [$load(c.add(i * ldc)), $load(c.add(i * ldc + $half))] } } else { [$zero(); 2] }
                });
                let row = a.row;
                for j in 0..a.taps {
                    // SAFETY: tap j's weights start `j * weights_tap` into B (caller's contract).
                    let mut b = unsafe { b.add(j * a.weights_tap) };
                    // Rows 0-2 from `p0` and rows 3-5 from `p3`, zero, one and two rows on: each
                    // address is one base plus a scaled index, with no arithmetic per row.
                    // SAFETY: rows 0..6 of tap j are readable for `channels` values (caller's contract).
                    let (mut p0, mut p3) = unsafe { (a.ptr.add(j * a.tap), a.ptr.add(j * a.tap + 3 * row)) };
                    // One (tap, channel) step: B holds 2 * half values per step.
                    macro_rules! step {
                        ($u:expr) => {{
                            let b0 = $load(b.add(2 * $half * $u));
                            let b1 = $load(b.add(2 * $half * $u + $half));
                            let rows = [p0, p0.add(row), p0.add(2 * row), p3, p3.add(row), p3.add(2 * row)];
                            for (acc_row, ptr) in acc.iter_mut().zip(rows) {
                                let av = $broadcast(&*ptr.add($u));
                                acc_row[0] = $fma(av, b0, acc_row[0]);
                                acc_row[1] = $fma(av, b1, acc_row[1]);
                            }
                        }};
                    }
                    // Four steps per pass (loop overhead once per four), then the rest: each
                    // accumulator still sees its channels in order.
                    // SAFETY: every step reads channels below `channels` of rows 0..6 and its
                    // 2 * half values of B.
                    unsafe {
                        for _ in 0..a.channels / 4 {
                            step!(0);
                            step!(1);
                            step!(2);
                            step!(3);
                            p0 = p0.add(4);
                            p3 = p3.add(4);
                            b = b.add(8 * $half);
                        }
                        for _ in 0..a.channels % 4 {
                            step!(0);
                            p0 = p0.add(1);
                            p3 = p3.add(1);
                            b = b.add(2 * $half);
                        }
                    }
                }
                // SAFETY: `bias` has 2 * half elements and each of the 6 rows of `c` has as many
                // writable ones (16-byte aligned when STREAM).
                unsafe {
                    let bias0 = $load(bias);
                    let bias1 = $load(bias.add($half));
                    // Rows aligned to a whole register take one non-temporal store per register
                    // instead of one per 16 bytes: far fewer store operations where short sums
                    // leave the stores as much work as the multiply-adds.
                    let register = $half * std::mem::size_of::<$t>();
                    let whole = (c as usize).is_multiple_of(register) && (ldc * std::mem::size_of::<$t>()).is_multiple_of(register);
                    for (i, row) in acc.iter().enumerate() {
                        let out = c.add(i * ldc);
                        let (v0, v1) = ($add(row[0], bias0), $add(row[1], bias1));
                        if STREAM && whole {
                            $stream_whole(out, v0);
                            $stream_whole(out.add($half), v1);
                        } else if STREAM {
                            $stream(out, $cast_low(v0));
                            $stream(out.add($quarter), $high(v0, 1));
                            $stream(out.add($half), $cast_low(v1));
                            $stream(out.add($half + $quarter), $high(v1, 1));
                        } else {
                            $store(out, v0);
                            $store(out.add($half), v1);
                        }
                    }
                }
            }
        };
    }

    macro_rules! kernel_narrow {
        ($name:ident, $tile:ident, $t:ty, $width:expr, $zero:ident, $load:ident, $broadcast:ident, $fma:ident, $add:ident,
         $store:ident) => {
            /// A `NARROW_MR`-step x one-register tile, for groups of at most one register of filters,
            /// which a two-register tile would fill only half. Ordinary stores only: a row is
            /// half a cache line, too little for non-temporal stores to pay.
            ///
            /// With `ACC`, sums start from the values in `c` (see [`super::MicroKernel::run_acc`]).
            ///
            /// # Safety
            /// As [`super::MicroKernel::run`] with `mr = NARROW_MR`, `nr = width`; the CPU has AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            pub unsafe fn $name<const ACC: bool>(a: Lhs<$t>, b: *const $t, bias: *const $t, c: *mut $t, ldc: usize, strip: super::Strip) {
                for s in 0..strip.count {
                    // SAFETY: tile `s` of the strip, which the caller vouches for.
                    unsafe {
                        let a = Lhs { ptr: a.ptr.add(s * strip.a), ..a };
                        strip.ahead.prefetch(a.ptr);
                        $tile::<ACC>(a, b.add(s * strip.b), bias.add(s * strip.bias), c.add(s * strip.c), ldc);
                    }
                }
            }

            /// One tile of the strip above.
            ///
            /// # Safety
            /// As the strip function, for one tile.
            #[target_feature(enable = "avx2,fma")]
            #[inline]
            unsafe fn $tile<const ACC: bool>(a: Lhs<$t>, b: *const $t, bias: *const $t, c: *mut $t, ldc: usize) {
                // SAFETY: with ACC, the NARROW_MR rows of `c` hold the earlier slices' sums (caller's contract).
                let mut acc: [_; super::NARROW_MR] = std::array::from_fn(|i| if ACC { unsafe { $load(c.add(i * ldc)) } } else { $zero() });
                for j in 0..a.taps {
                    // SAFETY: tap j's weights start `j * weights_tap` into B (caller's contract).
                    let mut b = unsafe { b.add(j * a.weights_tap) };
                    // SAFETY: rows 0..NARROW_MR of tap j are readable for `channels` values (caller's contract).
                    let rows: [*const $t; super::NARROW_MR] = std::array::from_fn(|i| unsafe { a.ptr.add(i * a.row + j * a.tap) });
                    for ch in 0..a.channels {
                        // SAFETY: `ch < channels` for every row; B holds `width` values per (tap, channel).
                        unsafe {
                            let b0 = $load(b);
                            for (row, &ptr) in acc.iter_mut().zip(&rows) {
                                *row = $fma($broadcast(&*ptr.add(ch)), b0, *row);
                            }
                            b = b.add($width);
                        }
                    }
                }
                // SAFETY: `bias` has `width` elements and each of the NARROW_MR rows of `c` has as many
                // writable ones.
                unsafe {
                    let bias0 = $load(bias);
                    for (i, row) in acc.iter().enumerate() {
                        $store(c.add(i * ldc), $add(*row, bias0));
                    }
                }
            }
        };
    }

    kernel_narrow!(f32_12x8, f32_12x8_tile, f32, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
        _mm256_add_ps, _mm256_storeu_ps);
    kernel_narrow!(f64_12x4, f64_12x4_tile, f64, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
        _mm256_add_pd, _mm256_storeu_pd);

    kernel_6x2!("avx2,fma", f32_6x16, f32_6x16_tile, f32, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
        _mm256_add_ps, _mm256_storeu_ps, _mm_stream_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, 4, _mm256_stream_ps);
    kernel_6x2!("avx2,fma", f64_6x8, f64_6x8_tile, f64, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
        _mm256_add_pd, _mm256_storeu_pd, _mm_stream_pd, _mm256_castpd256_pd128, _mm256_extractf128_pd, 2, _mm256_stream_pd);

    /// One value in every lane of a zmm register.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn broadcast_zmm(x: &f32) -> __m512 {
        _mm512_set1_ps(*x)
    }

    /// One value in every lane of a zmm register.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn broadcast_zmm_pd(x: &f64) -> __m512d {
        _mm512_set1_pd(*x)
    }

    /// Half a zmm register's worth, written with two 16-byte non-temporal stores.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn stream_half_zmm(out: *mut f32, v: __m256) {
        // SAFETY: 8 writable elements, 16-byte aligned (caller's contract).
        unsafe {
            _mm_stream_ps(out, _mm256_castps256_ps128(v));
            _mm_stream_ps(out.add(4), _mm256_extractf128_ps(v, 1));
        }
    }

    /// [`stream_half_zmm`] for float64: the stores move the same 32 bytes.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn stream_half_zmm_pd(out: *mut f64, v: __m256d) {
        // SAFETY: 4 writable elements, 16-byte aligned (caller's contract), are 8 f32 ones.
        unsafe { stream_half_zmm(out.cast(), _mm256_castpd_ps(v)) }
    }

    // The two-register tiles again in zmm registers, 6 x 32 (float32) and 6 x 16 (float64):
    // the same sums in the same order, with half the broadcasts per multiply-add.
    kernel_6x2!("avx2,fma,avx512f,avx512dq", f32_6x32, f32_6x32_tile, f32, 16, _mm512_setzero_ps, _mm512_loadu_ps, broadcast_zmm,
        _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, stream_half_zmm, _mm512_castps512_ps256, _mm512_extractf32x8_ps, 8, _mm512_stream_ps);
    kernel_6x2!("avx2,fma,avx512f", f64_6x16, f64_6x16_tile, f64, 8, _mm512_setzero_pd, _mm512_loadu_pd, broadcast_zmm_pd,
        _mm512_fmadd_pd, _mm512_add_pd, _mm512_storeu_pd, stream_half_zmm_pd, _mm512_castpd512_pd256, _mm512_extractf64x4_pd, 4, _mm512_stream_pd);

    /// Orders earlier non-temporal stores before what follows (other threads read the output).
    pub fn store_fence() {
        // SAFETY: SSE is part of x86_64.
        unsafe { _mm_sfence() };
    }
}
