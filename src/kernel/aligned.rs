//! Buffers whose first element starts a cache line: the kernels load their weights and
//! spectra a register at a time, and a register load that straddles two lines costs two.

use num_traits::Zero;
use std::ops::{Deref, DerefMut};

/// Bytes of a cache line.
pub const CACHE_LINE: usize = 64;

/// Elements from `ptr` to the next cache-line boundary (0 when it starts one).
pub fn line_offset<T>(ptr: *const T) -> usize {
    (ptr as usize).wrapping_neg() % CACHE_LINE / std::mem::size_of::<T>()
}

/// `len` elements from a cache-line boundary inside a slightly longer allocation.
#[derive(Debug)]
pub struct LineAligned<T> {
    storage: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Zero> LineAligned<T> {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        let storage = vec![T::zero(); len + CACHE_LINE / std::mem::size_of::<T>()];
        let start = line_offset(storage.as_ptr());
        LineAligned { storage, start, len }
    }
}

impl<T> Deref for LineAligned<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl<T> DerefMut for LineAligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// A copy on a cache line of its own: a copy of the allocation would keep the offset of the
/// start, not its alignment.
impl<T: Copy + Zero> Clone for LineAligned<T> {
    fn clone(&self) -> Self {
        let mut copy = Self::zeros(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::LineAligned;

    #[test]
    fn buffers_and_their_clones_start_on_a_cache_line() {
        let mut buffer = LineAligned::<f32>::zeros(37);
        assert_eq!(buffer.len(), 37);
        assert!(buffer.iter().all(|&v| v == 0.0));
        buffer[36] = 5.0;
        for _ in 0..8 {
            let copy = buffer.clone();
            assert_eq!(&copy[..], &buffer[..]);
            assert!((copy.as_ptr() as usize).is_multiple_of(64));
        }
        assert!((buffer.as_ptr() as usize).is_multiple_of(64));
        assert!((LineAligned::<f64>::zeros(3).as_ptr() as usize).is_multiple_of(64));
    }
}
