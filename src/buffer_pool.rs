//! Output buffers recycled from arrays the caller has dropped.
//!
//! A large output allocated fresh on every call comes from new pages that the OS must
//! fault in and zero, which for memory-bound shapes costs as much as the convolution.
//! Reusing the last few dropped buffers (as inference runtimes' arenas do) avoids that.
//! The pool is small and bounded; buffers below `MIN_BYTES` are left to the allocator.

use std::sync::Mutex;

const MAX_BUFFERS: usize = 4;
const MAX_BYTES: usize = 1 << 30;
const MIN_BYTES: usize = 1 << 20;

/// A bounded set of idle buffers of one element type.
pub struct BufferPool<T> {
    idle: Mutex<Vec<Vec<T>>>,
}

impl<T> BufferPool<T> {
    pub const fn new() -> Self {
        BufferPool { idle: Mutex::new(Vec::new()) }
    }

    /// An idle buffer holding at least `len` initialised elements (truncated to `len`),
    /// not more than twice as large, so big buffers are not spent on small outputs.
    pub fn take(&self, len: usize) -> Option<Vec<T>> {
        if len * std::mem::size_of::<T>() < MIN_BYTES {
            return None;
        }
        let mut idle = self.idle.lock().ok()?;
        let index = idle.iter().position(|b| b.len() >= len && b.len() / 2 <= len)?;
        let mut buffer = idle.swap_remove(index);
        buffer.truncate(len);
        Some(buffer)
    }

    /// Keeps `buffer` for reuse, dropping the oldest idle ones past the bounds.
    pub fn give(&self, buffer: Vec<T>) {
        let bytes = |b: &Vec<T>| b.len() * std::mem::size_of::<T>();
        if bytes(&buffer) < MIN_BYTES || bytes(&buffer) > MAX_BYTES {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(buffer);
            while idle.len() > MAX_BUFFERS || idle.iter().map(bytes).sum::<usize>() > MAX_BYTES {
                idle.remove(0);
            }
        }
    }

    /// Frees every idle buffer.
    pub fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_buffers_of_a_fitting_size_only() {
        let pool = BufferPool::<f32>::new();
        let len = MIN_BYTES; // four bytes each: 4 MiB
        pool.give(vec![1.0; len]);
        assert!(pool.take(len * 4).is_none(), "too small");
        assert!(pool.take(len / 4).is_none(), "too large to spend");
        let buffer = pool.take(len - 3).expect("fits");
        assert_eq!(buffer.len(), len - 3);
        assert!(pool.take(len).is_none(), "taken");
    }

    #[test]
    fn stays_bounded() {
        let pool = BufferPool::<u8>::new();
        for _ in 0..10 {
            pool.give(vec![0; MIN_BYTES]);
        }
        assert_eq!(pool.idle.lock().unwrap().len(), MAX_BUFFERS);
        pool.give(vec![0; 16]);
        assert_eq!(pool.idle.lock().unwrap().len(), MAX_BUFFERS, "small buffers are not kept");
    }
}
