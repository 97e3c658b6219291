//! The allocator of plugin processes: a bump arena that never frees.
//!
//! A plugin lives a few milliseconds and allocates well under a megabyte, so giving memory
//! back is work nobody needs. Built static with musl, a plugin would otherwise have musl's
//! allocator map and unmap a fresh page group for many of its allocations, a visible share
//! of an ADD (docs/benchmarks.md has what a bridge ADD costs). A plugin that outgrows the arena (a
//! GC reading a huge ruleset) gets the rest from the system allocator. Daemons (the agent)
//! and cnictl keep the system allocator: they live long.
//!
//! Each plugin binary opts in with
//! `#[global_allocator] static ALLOCATOR: kernel::arena::ShortLived = kernel::arena::ShortLived;`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Zero-filled `.bss`: pages cost nothing until touched.
const ARENA_BYTES: usize = 8 << 20;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: the cursor hands out disjoint byte ranges with an atomic compare-exchange, so no
// two allocations ever share bytes; the arena itself is never read or written here.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
/// Bytes of the arena handed out so far.
static USED: AtomicUsize = AtomicUsize::new(0);

/// The global allocator for plugin binaries (see the module doc).
pub struct ShortLived;

fn base() -> *mut u8 {
    ARENA.0.get().cast()
}

fn offset_in_arena(ptr: *mut u8) -> Option<usize> {
    (ptr as usize)
        .checked_sub(base() as usize)
        .filter(|offset| *offset < ARENA_BYTES)
}

/// Moves the cursor from `from` to `to` if nobody moved it meanwhile.
fn claim(from: usize, to: usize) -> Result<(), usize> {
    USED.compare_exchange(from, to, Relaxed, Relaxed).map(drop)
}

// SAFETY: every pointer returned is either a range of the arena no other allocation overlaps,
// aligned as asked, or the system allocator's; `dealloc` and `realloc` hand the system's
// pointers back to it and never free arena ranges.
unsafe impl GlobalAlloc for ShortLived {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base_address = base() as usize;
        let mut used = USED.load(Relaxed);
        loop {
            let start = (base_address + used).next_multiple_of(layout.align()) - base_address;
            match start.checked_add(layout.size()) {
                Some(end) if end <= ARENA_BYTES => match claim(used, end) {
                    Ok(()) => return base().wrapping_add(start),
                    Err(now) => used = now,
                },
                // SAFETY: the layout is the caller's, valid per GlobalAlloc's contract.
                _ => return unsafe { System.alloc(layout) },
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if offset_in_arena(ptr).is_none() {
            // SAFETY: not an arena pointer, so the system allocator made it with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Shrinks in place, grows the newest allocation in place (a Vec or String being
    /// filled), and moves anything else.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Some(start) = offset_in_arena(ptr) {
            if new_size <= layout.size() {
                return ptr;
            }
            let end = start + layout.size();
            let new_end = start + new_size;
            if new_end <= ARENA_BYTES && claim(end, new_end).is_ok() {
                return ptr;
            }
        }
        // SAFETY: same contract as the default realloc: a new block, the old bytes copied,
        // the old block released (a no-op inside the arena).
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let layouts = [(1, 1), (24, 8), (3, 1), (64, 64), (4096, 4096), (5, 2)];
        let mut ranges = Vec::new();
        for (size, align) in layouts {
            let layout = Layout::from_size_align(size, align).expect("a valid layout");
            // SAFETY: non-zero sizes; each block is written within its size only.
            let ptr = unsafe { ShortLived.alloc(layout) };
            assert!(!ptr.is_null());
            assert_eq!(ptr as usize % align, 0, "alignment {align}");
            // SAFETY: `size` bytes belong to this block.
            unsafe { std::ptr::write_bytes(ptr, 0xab, size) };
            ranges.push((ptr as usize, ptr as usize + size));
        }
        ranges.sort();
        assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "{ranges:x?}");
    }

    #[test]
    fn growing_the_newest_block_keeps_its_bytes() {
        let layout = Layout::from_size_align(16, 8).expect("a valid layout");
        // SAFETY: blocks are used within their sizes; the old pointer is not used after realloc.
        unsafe {
            let ptr = ShortLived.alloc(layout);
            std::ptr::copy_nonoverlapping(b"sixteen bytes!!!".as_ptr(), ptr, 16);
            let grown = ShortLived.realloc(ptr, layout, 4096);
            assert_eq!(std::slice::from_raw_parts(grown, 16), b"sixteen bytes!!!");
            std::ptr::write_bytes(grown.add(16), 0, 4096 - 16);
            let shrunk = ShortLived.realloc(
                grown,
                Layout::from_size_align(4096, 8).expect("a valid layout"),
                8,
            );
            assert_eq!(std::slice::from_raw_parts(shrunk, 8), b"sixteen ");
        }
    }

    #[test]
    fn past_the_arena_the_system_allocator_serves() {
        let layout = Layout::from_size_align(ARENA_BYTES + 1, 8).expect("a valid layout");
        // SAFETY: the block is written within its size and freed once with its layout.
        unsafe {
            let ptr = ShortLived.alloc(layout);
            assert!(!ptr.is_null());
            assert!(offset_in_arena(ptr).is_none());
            std::ptr::write_bytes(ptr, 1, layout.size());
            ShortLived.dealloc(ptr, layout);
        }
    }
}
