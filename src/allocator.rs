//! The executable's allocator.
#![allow(unsafe_code, reason = "an allocator is unsafe code by nature")]

use std::alloc::{GlobalAlloc, Layout};

use libmimalloc_sys as mi;

/// mimalloc rather than the C library's allocator: a chat turn makes a few
/// hundred small allocations, and under concurrent turns glibc's malloc and
/// free took about a sixth of the server's time (BENCHMARKS.md, issue 9).
/// Built without transparent huge pages, so that an idle server stays small.
#[global_allocator]
static ALLOCATOR: Mimalloc = Mimalloc;

/// mimalloc's blocks are aligned to 16 bytes, or to their size when smaller.
const PLAIN_ALIGN: usize = 16;

/// mimalloc through its plain entry points whenever a block's own alignment
/// is enough, which is nearly always: the aligned ones, which mimalloc's own
/// Rust crate always calls, check the alignment again on every call.
pub struct Mimalloc;

fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc and goes back to it; a block is
// asked for with an alignment mimalloc guarantees, or through the aligned
// entry point that guarantees the one asked for.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions take any size.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is mimalloc.
        unsafe { mi::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; mimalloc keeps a block's
        // alignment when it moves it only through the aligned entry point.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block is aligned as asked, zeroed when asked, and keeps its
    /// bytes and alignment when it grows, on both of mimalloc's entry points.
    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_bytes() {
        let allocator = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 15, 16, 24, 100, 5000, 70_000] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: the layouts have a non-zero size; each block is
                // used within its size and freed once, with its layout.
                unsafe {
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(zeroed as usize % align, 0, "zeroed {size}/{align}");
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    allocator.dealloc(zeroed, layout);

                    let block = allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "{size}/{align}");
                    for i in 0..size {
                        *block.add(i) = (i % 251) as u8;
                    }
                    let grown = allocator.realloc(block, layout, size * 3);
                    assert!(!grown.is_null());
                    assert_eq!(grown as usize % align, 0, "grown {size}/{align}");
                    assert!((0..size).all(|i| *grown.add(i) == (i % 251) as u8));
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    allocator.dealloc(grown, grown_layout);
                }
            }
        }
    }

    #[test]
    fn only_alignments_a_block_has_anyway_take_the_plain_path() {
        assert!(plain(8, 8));
        assert!(plain(16, 48));
        assert!(plain(1, 1));
        assert!(!plain(32, 64));
        assert!(!plain(16, 8));
        assert!(!plain(4096, 4096));
    }
}
