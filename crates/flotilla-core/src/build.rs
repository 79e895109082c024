//! Naming code across the processes of one build: a [`fingerprint`] of this program's
//! binary, and a function's [offset](offset_of_fn) in it, which another process of the
//! same build turns back into the function with [`fn_at`].
//!
//! A function pointer cannot cross a process boundary as it is: a spawned child of the
//! same binary loads it at another address. Its distance from a function of flotilla's
//! own is the same in every process of the build, so that distance is what travels; the
//! fingerprint, checked first, makes sure the receiver is the same build.

use std::sync::OnceLock;

/// The offset of `f` in this binary, for a process of the same build
/// ([`fingerprint`]) to find it with [`fn_at`].
///
/// ```
/// fn hello() {}
/// let offset = flotilla_core::build::offset_of_fn(hello);
/// // SAFETY: the offset comes from this process.
/// let again = unsafe { flotilla_core::build::fn_at(offset) };
/// again();
/// ```
pub fn offset_of_fn(f: fn()) -> usize {
    (f as usize).wrapping_sub(code_base as *const () as usize)
}

/// The `fn()` at `offset` in this binary.
///
/// # Safety
///
/// `offset` must come from [`offset_of_fn`] in a process running this very binary (the
/// same [`fingerprint`]).
pub unsafe fn fn_at(offset: usize) -> fn() {
    let address = (code_base as *const () as usize).wrapping_add(offset);
    // SAFETY: per this function's contract, `address` is the address of a `fn()` of this
    // binary.
    unsafe { std::mem::transmute::<usize, fn()>(address) }
}

/// The function offsets are measured from.
#[inline(never)]
fn code_base() {
    // A body that cannot be merged with another function's.
    std::hint::black_box(0xf107_111a_c0de_u64);
}

/// A fingerprint of this program's build: the GNU build-id the linker wrote into the
/// loaded executable (a hash of its contents), or, when it has none, a hash of the
/// executable file's bytes; and flotilla's version. Computed once per process.
///
/// It identifies the bytes, never the file's metadata: `touch` or a copy of the same
/// build is the same build, while a rebuilt binary is another.
///
/// ```
/// assert_eq!(flotilla_core::build::fingerprint(), flotilla_core::build::fingerprint());
/// ```
pub fn fingerprint() -> u64 {
    static FINGERPRINT: OnceLock<u64> = OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        let mut h = Fnv::default();
        match build_id() {
            Some(id) => {
                h.write(b"build-id");
                h.write(&id);
            }
            None => {
                h.write(b"contents");
                h.write(&hash_file("/proc/self/exe").to_le_bytes());
            }
        }
        h.write(env!("CARGO_PKG_VERSION").as_bytes());
        h.0
    })
}

/// The GNU build-id note of the main executable, read from its loaded program headers.
fn build_id() -> Option<Vec<u8>> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        out: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader hands a valid `dl_phdr_info` for the duration of the call,
        // whose `dlpi_phdr` points at `dlpi_phnum` program headers of an object loaded
        // at `dlpi_addr`; `out` is the `Option<Vec<u8>>` passed below. The first object
        // visited is the main program.
        unsafe {
            let info = &*info;
            let out = &mut *(out as *mut Option<Vec<u8>>);
            let headers = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            for ph in headers.iter().filter(|ph| ph.p_type == libc::PT_NOTE) {
                let start = (info.dlpi_addr as usize).wrapping_add(ph.p_vaddr as usize);
                let notes = std::slice::from_raw_parts(start as *const u8, ph.p_memsz as usize);
                if let Some(id) = find_build_id(notes) {
                    *out = Some(id);
                    break;
                }
            }
        }
        1 // the main program only
    }
    let mut out: Option<Vec<u8>> = None;
    // SAFETY: `visit` matches the callback type and only reads what the loader hands
    // it; `out` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut out as *mut Option<Vec<u8>>).cast()) };
    out
}

/// The descriptor of an `NT_GNU_BUILD_ID` note in a note segment's bytes.
fn find_build_id(mut notes: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let align4 = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let namesz = word(notes, 0)? as usize;
        let descsz = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let name_at = 12;
        let desc_at = name_at + align4(namesz);
        let next = desc_at + align4(descsz);
        let name = notes.get(name_at..name_at + namesz)?;
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc.to_vec());
        }
        notes = notes.get(next..)?;
    }
    None
}

/// A hash of a file's bytes, eight at a time (0 when it cannot be read): the fallback
/// for a binary without a build-id.
fn hash_file(path: &str) -> u64 {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n as u64;
        for chunk in buf[..n].chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(word))
                .wrapping_mul(0x0100_0000_01b3)
                .rotate_left(29);
        }
    }
    h ^ total
}

/// FNV-1a: tiny, and good enough to tell builds apart.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_build_has_a_build_id_and_a_stable_fingerprint() {
        assert!(build_id().is_some_and(|id| !id.is_empty()));
        assert_eq!(fingerprint(), fingerprint());
    }

    fn one() -> u32 {
        1
    }
    fn two() -> u32 {
        2
    }

    #[test]
    fn a_function_is_found_again_from_its_offset() {
        for f in [one as fn() -> u32, two] {
            // SAFETY: a `fn() -> u32` and a `fn()` have the same representation; the
            // pointer is only called back as the `fn() -> u32` it was.
            let as_unit: fn() = unsafe { std::mem::transmute::<fn() -> u32, fn()>(f) };
            let offset = offset_of_fn(as_unit);
            // SAFETY: the offset was taken above, in this very process.
            let back = unsafe { fn_at(offset) };
            // SAFETY: `back` is `f`, which is a `fn() -> u32`.
            let back = unsafe { std::mem::transmute::<fn(), fn() -> u32>(back) };
            assert_eq!(back(), f());
        }
    }

    #[test]
    fn a_build_id_note_is_found_among_others() {
        let mut notes = Vec::new();
        for (name, kind, desc) in [
            (&b"XYZ\0"[..], 1u32, &[9u8, 9, 9][..]),
            (b"GNU\0", 3, &[1, 2, 3, 4, 5]),
        ] {
            notes.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
            notes.extend_from_slice(&kind.to_ne_bytes());
            notes.extend_from_slice(name);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
            notes.extend_from_slice(desc);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
        }
        assert_eq!(find_build_id(&notes), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(find_build_id(&notes[..20]), None);
    }
}
