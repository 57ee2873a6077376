//! Output buffers recycled from arrays the caller has dropped.
//!
//! A large output allocated fresh on every call comes from new pages that the OS must
//! fault in and zero, which for memory-bound shapes costs as much as the convolution; a
//! small one costs a trip through the allocator, a fair part of a call of a microsecond.
//! Reusing the last few dropped buffers (as inference runtimes' arenas do) avoids both.
//! Small and large buffers are kept apart, each set small and bounded, so that a run of
//! small calls does not evict the large buffers.

use std::sync::Mutex;

/// Most idle buffers in each set.
const MAX_BUFFERS: usize = 4;
const MAX_BYTES: usize = 1 << 30;
/// Buffers of this size and more are large.
const LARGE_BYTES: usize = 1 << 20;

/// Two bounded sets of idle buffers of one element type, small and large.
pub struct BufferPool<T> {
    small: Mutex<Vec<Vec<T>>>,
    large: Mutex<Vec<Vec<T>>>,
}

impl<T> BufferPool<T> {
    pub const fn new() -> Self {
        BufferPool { small: Mutex::new(Vec::new()), large: Mutex::new(Vec::new()) }
    }

    /// The set that buffers of `len` elements belong to.
    fn set(&self, len: usize) -> &Mutex<Vec<Vec<T>>> {
        if len.saturating_mul(std::mem::size_of::<T>()) < LARGE_BYTES {
            &self.small
        } else {
            &self.large
        }
    }

    /// An idle buffer holding at least `len` initialised elements (truncated to `len`),
    /// not more than twice as large, so big buffers are not spent on small outputs.
    pub fn take(&self, len: usize) -> Option<Vec<T>> {
        let mut idle = self.set(len).lock().ok()?;
        let index = idle.iter().position(|b| b.len() >= len && b.len() / 2 <= len)?;
        let mut buffer = idle.swap_remove(index);
        buffer.truncate(len);
        Some(buffer)
    }

    /// Keeps `buffer` for reuse, dropping the oldest idle ones of its set past the bounds.
    pub fn give(&self, buffer: Vec<T>) {
        let bytes = |b: &Vec<T>| b.len() * std::mem::size_of::<T>();
        if buffer.is_empty() || bytes(&buffer) > MAX_BYTES {
            return;
        }
        if let Ok(mut idle) = self.set(buffer.len()).lock() {
            idle.push(buffer);
            while idle.len() > MAX_BUFFERS || idle.iter().map(bytes).sum::<usize>() > MAX_BYTES {
                idle.remove(0);
            }
        }
    }

    /// Frees every idle buffer.
    pub fn clear(&self) {
        for set in [&self.small, &self.large] {
            if let Ok(mut idle) = set.lock() {
                idle.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers_of_a_fitting_size_only() {
        let pool = BufferPool::<f32>::new();
        for len in [LARGE_BYTES, 100] {
            pool.give(vec![1.0; len]);
            assert!(pool.take(len * 4).is_none(), "too small");
            assert!(pool.take(len / 4).is_none(), "too large to spend");
            let buffer = pool.take(len - 3).expect("fits");
            assert_eq!(buffer.len(), len - 3);
            assert!(pool.take(len).is_none(), "taken");
        }
    }

    #[test]
    fn stays_bounded() {
        let pool = BufferPool::<u8>::new();
        for _ in 0..10 {
            pool.give(vec![0; LARGE_BYTES]);
        }
        assert_eq!(pool.large.lock().unwrap().len(), MAX_BUFFERS);
        pool.give(vec![0; 2 * LARGE_BYTES]);
        assert_eq!(pool.large.lock().unwrap()[MAX_BUFFERS - 1].len(), 2 * LARGE_BYTES, "the oldest goes");
        for _ in 0..10 {
            pool.give(vec![0; 16]);
        }
        assert_eq!(pool.small.lock().unwrap().len(), MAX_BUFFERS);
        assert_eq!(pool.large.lock().unwrap().len(), MAX_BUFFERS, "small buffers do not evict large ones");
        pool.clear();
        assert!(pool.take(16).is_none() && pool.take(LARGE_BYTES).is_none());
    }
}
