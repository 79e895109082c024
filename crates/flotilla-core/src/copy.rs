//! Byte copies that stay fast when the destination sits a few bytes past the source
//! modulo 4 KiB. For flotilla's own crates; not part of the API.
//!
//! A processor tells a load from an earlier store by the address bits within a 4 KiB
//! page first. When the destination is 1 to 63 bytes ahead of the source modulo 4 KiB,
//! a forward copy's every load matches a store it has just issued (4K aliasing), and
//! waits for it. glibc's `memcpy` copies forward, and with `rep movsb` on processors
//! that report fast short `rep movsb` (`fsrm`), such a copy of 16 KiB or 64 KiB runs at
//! 2.4 to 3.5 GB/s instead of 56 on this project's AMD EPYC machine (glibc 2.36; 2.39
//! stopped using `rep movsb` there below the L2 size, but the vector loop still loses
//! two thirds). It is no rare case: large allocations begin 16 bytes into a page, and
//! a byte string goes after an 8-byte length, so copying one encoded value into
//! another buffer lands 8 bytes ahead, every time. Byte strings of 16 KiB to 128 KiB
//! through a process queue (one producer, one consumer) went from 2.9-3.1 GB/s to
//! 19-24 GB/s when the queue's copies went through these.
//!
//! In that window these copy backward, 64 bytes at a time: each load then reads bytes
//! that no pending store covers. Elsewhere they are `memcpy`.

/// From this length up, a copy in the aliasing window goes backward; below it the
/// stall costs less than a loop.
const BACKWARD_FROM: usize = 512;

/// The distances (destination minus source, modulo 4 KiB) where a forward copy stalls.
#[inline]
fn aliased(dst: *const u8, src: *const u8) -> bool {
    let ahead = (dst as usize).wrapping_sub(src as usize) % 4096;
    (1..64).contains(&ahead)
}

/// `dst.copy_from_slice(src)`, fast in the aliasing window too.
///
/// # Panics
///
/// If the two lengths differ, as `copy_from_slice` does.
#[inline]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy between slices of unequal lengths"
    );
    // SAFETY: two slices of `src.len()` bytes, one borrowed mutably: valid, and disjoint.
    unsafe { copy_raw(src.as_ptr(), dst.as_mut_ptr(), src.len()) };
}

/// `vec.extend_from_slice(src)`, fast in the aliasing window too.
#[inline]
pub fn extend(vec: &mut Vec<u8>, src: &[u8]) {
    if src.len() < BACKWARD_FROM {
        vec.extend_from_slice(src);
        return;
    }
    extend_long(vec, src);
}

/// [`extend`] for `src` of [`BACKWARD_FROM`] bytes or more.
#[inline(never)]
fn extend_long(vec: &mut Vec<u8>, src: &[u8]) {
    let len = vec.len();
    vec.reserve(src.len());
    // SAFETY: after `reserve`, the `src.len()` bytes after `len` are within the vector's
    // allocation, which `src` (borrowed while `vec` is borrowed mutably) cannot overlap;
    // they are written through the pointer only, never read, before `set_len` makes them
    // part of the vector.
    unsafe {
        copy_raw(src.as_ptr(), vec.as_mut_ptr().add(len), src.len());
        vec.set_len(len + src.len());
    }
}

/// `ptr::copy_nonoverlapping(src, dst, len)`, fast in the aliasing window too.
///
/// # Safety
///
/// As for `ptr::copy_nonoverlapping`: `src` valid for reads and `dst` for writes of
/// `len` bytes, the two not overlapping; and no other thread writes `src` or touches
/// `dst` meanwhile (the caller's protocol, as for shared memory behind a lock).
#[inline]
pub unsafe fn copy_raw(src: *const u8, dst: *mut u8, len: usize) {
    if len < BACKWARD_FROM || !aliased(dst, src) {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { backward(src, dst, len) };
}

/// Copies `len` bytes from `src` to `dst` from the end, 64 bytes at a time. Out of line,
/// so that the callers' short copies, inlined, stay short.
///
/// # Safety
///
/// As for [`copy_raw`].
#[inline(never)]
unsafe fn backward(src: *const u8, dst: *mut u8, len: usize) {
    let head = len % 64;
    let mut at = len;
    while at > head {
        at -= 64;
        // SAFETY: `head <= at` and `at + 64 <= len`, within both ranges (the caller's
        // contract). A constant length: the compiler copies the block with vector
        // moves, inline.
        unsafe { std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), 64) };
    }
    // SAFETY: the first `head` bytes, within both ranges.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, head) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Every distance in and around the window, lengths on both sides of the backward
    /// threshold and of a 64-byte block, in all three forms.
    #[test]
    fn copies_are_exact_at_every_distance_and_length() {
        let src = pattern(70_000);
        let mut buf = vec![0u8; 80_000];
        for len in [
            0,
            1,
            63,
            64,
            65,
            BACKWARD_FROM - 1,
            BACKWARD_FROM,
            BACKWARD_FROM + 1,
            BACKWARD_FROM + 63,
            4095,
            4096,
            4097,
            65_536 + 13,
        ] {
            for src_at in [0usize, 8, 13] {
                for ahead in [0usize, 1, 8, 15, 16, 63, 64, 65, 4095] {
                    let from = &src[src_at..src_at + len];
                    // A destination at the wanted distance modulo 4 KiB from `from`.
                    let base = buf.as_ptr() as usize;
                    let want = (from.as_ptr() as usize + ahead) % 4096;
                    let at = (want + 4096 - base % 4096) % 4096;
                    assert_eq!(
                        aliased(buf[at..].as_ptr(), from.as_ptr()),
                        (1..64).contains(&ahead)
                    );
                    buf.fill(0);
                    copy(&mut buf[at..at + len], from);
                    assert!(
                        buf[at..at + len] == *from,
                        "copy: {len} bytes, {ahead} ahead"
                    );
                    assert!(buf[..at].iter().all(|&b| b == 0), "copy wrote before");
                    assert!(buf[at + len..].iter().all(|&b| b == 0), "copy wrote after");
                    buf.fill(0);
                    // SAFETY: both ranges are in bounds of distinct vectors.
                    unsafe { copy_raw(from.as_ptr(), buf[at..].as_mut_ptr(), len) };
                    assert!(
                        buf[at..at + len] == *from,
                        "copy_raw: {len} bytes, {ahead} ahead"
                    );
                    let mut vec = Vec::with_capacity(at + len);
                    vec.resize(at, 9);
                    extend(&mut vec, from);
                    assert_eq!(vec.len(), at + len);
                    assert!(vec[at..] == *from && vec[..at].iter().all(|&b| b == 9));
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "unequal lengths")]
    fn unequal_lengths_panic_as_copy_from_slice_does() {
        copy(&mut [0u8; 600], &[1u8; 601]);
    }
}
