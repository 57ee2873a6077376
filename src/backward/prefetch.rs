//! Software prefetch of a band of rows, spread over the calls that compute meanwhile.

/// Prefetches, into L2, the cache lines of `rows` rows of `len` elements, `stride` apart,
/// spread over `calls` calls of [`LinePrefetch::issue`]: a burst of prefetches would stall
/// on the few outstanding misses a core may have.
pub(super) struct LinePrefetch {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    start: *const u8,
    row_bytes: usize,
    lines_per_row: usize,
    total: usize,
    next: usize,
    per_call: usize,
}

impl Default for LinePrefetch {
    fn default() -> Self {
        LinePrefetch { start: std::ptr::null(), row_bytes: 0, lines_per_row: 1, total: 0, next: 0, per_call: 0 }
    }
}

impl LinePrefetch {
    pub fn new<T>(data: &[T], rows: usize, stride: usize, len: usize, calls: usize) -> Self {
        let size = std::mem::size_of::<T>();
        assert!(rows == 0 || (rows - 1) * stride + len <= data.len(), "prefetch past the data");
        let lines_per_row = (len * size).div_ceil(64).max(1);
        let total = rows * lines_per_row;
        LinePrefetch {
            start: data.as_ptr().cast(),
            row_bytes: stride * size,
            lines_per_row,
            total,
            next: 0,
            per_call: total.div_ceil(calls.max(1)),
        }
    }

    /// Issues this call's share of the prefetches.
    #[inline]
    pub fn issue(&mut self) {
        let end = (self.next + self.per_call).min(self.total);
        for i in self.next..end {
            let offset = (i / self.lines_per_row) * self.row_bytes + (i % self.lines_per_row) * 64;
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch never faults or changes memory; the address is the start of a
            // line inside the data `new` was given (checked there).
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
                _mm_prefetch::<_MM_HINT_T1>(self.start.wrapping_add(offset).cast());
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = offset;
        }
        self.next = end;
    }
}
