//! A global allocator that counts what is live, for measuring heap use
//! precisely (RSS moves in pages and keeps freed memory). Install it in a
//! measuring program, never in the gateway:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: count_alloc::Counting = count_alloc::Counting;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting.
pub struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static CHUNK_BYTES: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// What is live at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// Bytes asked for.
    pub bytes: usize,
    /// Bytes as glibc's malloc holds them on 64-bit Linux: each block with
    /// its 8-byte header, rounded up to 16, at least 32 (what RSS sees).
    pub chunk_bytes: usize,
    /// Blocks allocated and not yet freed.
    pub blocks: usize,
}

pub fn live() -> Live {
    Live { bytes: BYTES.load(Relaxed), chunk_bytes: CHUNK_BYTES.load(Relaxed), blocks: BLOCKS.load(Relaxed) }
}

fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

fn count_alloc(size: usize) {
    BYTES.fetch_add(size, Relaxed);
    CHUNK_BYTES.fetch_add(chunk(size), Relaxed);
    BLOCKS.fetch_add(1, Relaxed);
}

fn count_free(size: usize) {
    BYTES.fetch_sub(size, Relaxed);
    CHUNK_BYTES.fetch_sub(chunk(size), Relaxed);
    BLOCKS.fetch_sub(1, Relaxed);
}

// SAFETY: every call is passed on to `System` unchanged; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (every block does).
        unsafe { System.dealloc(ptr, layout) };
        count_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; on failure the old block stays live.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count_free(layout.size());
            count_alloc(new_size);
        }
        new
    }
}
