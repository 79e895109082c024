//! [`SharedMemory`]: Python's `multiprocessing.shared_memory.SharedMemory`, a segment of
//! memory mapped into every process that holds it, anonymous (memfd) or named
//! (`/dev/shm`).
//!
//! The rules users rely on — who unlinks a name, why there is no safe `&[u8]`, how a
//! segment crosses into another process — are on [`SharedMemory`] itself. What this
//! file adds: the mapping is made once in `map` and unmapped once in `Drop`; every other
//! function reaches the memory through `as_ptr` within `0..size`.

use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::{Mode, fstat};
use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ShmError;
use crate::handle::{Exported, Fd};

/// The longest name a segment may have (`NAME_MAX`, without the leading slash).
const NAME_MAX: usize = 255;

/// What a [name tracker](set_name_tracker) is told about this process's named segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameEvent {
    /// This process now unlinks the name when it drops the segment: it created it, or
    /// chose to with [`SharedMemory::set_unlink_on_drop`].
    Owned,
    /// This process no longer unlinks the name: it was unlinked, or
    /// `set_unlink_on_drop(false)` gave it up.
    Released,
}

static NAME_TRACKER: std::sync::OnceLock<fn(NameEvent, &str)> = std::sync::OnceLock::new();

/// Installs the process-wide hook told whenever this process takes on or gives up the
/// duty to unlink a segment's name, so that someone can unlink the names of a process
/// that died without doing so (CPython's resource tracker). flotilla-process installs
/// one; only the first call takes effect (false for later ones).
pub fn set_name_tracker(hook: fn(NameEvent, &str)) -> bool {
    NAME_TRACKER.set(hook).is_ok()
}

fn track(event: NameEvent, name: &str) {
    if let Some(hook) = NAME_TRACKER.get() {
        hook(event, name);
    }
}

/// A segment of shared memory: anonymous ([`new`](Self::new)) or named
/// ([`create`](Self::create), [`open`](Self::open)).
///
/// The memory is zeroed when created, mapped read-write, and stays mapped until this
/// value is dropped.
///
/// # Ownership of names
///
/// An anonymous segment has no name: it lives while some process holds its descriptor or
/// a mapping of it, and the kernel frees it when the last one goes. Nothing can leak.
///
/// A named segment also has an entry in `/dev/shm`, which outlives every process unless
/// someone unlinks it. The rule here is explicit, and differs from Python's (where every
/// process's resource tracker may unlink, and warns about "leaked" segments at exit):
///
/// - the process that **creates** a named segment ([`SharedMemory::create`]) unlinks its
///   name when it drops it, unless told to keep it
///   ([`SharedMemory::set_unlink_on_drop`]`(false)`);
/// - a process that **attaches** by name ([`SharedMemory::open`]) or receives a segment
///   (as a process argument, over a `Connection`, or as a forked copy) never unlinks
///   unless it asks to ([`SharedMemory::unlink`], or `set_unlink_on_drop(true)`). A
///   forked child's copy of the creator's segment does not unlink either: the duty is
///   tied to the creator's pid, not to the value;
/// - a name is unlinked only while it still names *this* segment (same inode): if
///   someone unlinked it and created another segment under the same name, that one is
///   left alone.
///
/// Unlinking removes only the name. As POSIX specifies for `shm_unlink`, memory mapped by
/// any process stays valid until that process unmaps it (drops its `SharedMemory`): a
/// creator that exits early never pulls memory from under the others. If the creator is
/// killed before it drops the segment, its name tracker ([`set_name_tracker`]; with
/// flotilla-process, a small process per creator) unlinks the names it still owned;
/// without one the name stays in `/dev/shm`. An anonymous segment needs neither.
///
/// # Access: why there is no safe `&[u8]`
///
/// Another process can write the segment at any moment, outside anything the compiler
/// can see. A `&[u8]` promises that the bytes do not change while it lives, so handing one
/// out in safe code would be unsound as soon as a second process writes. The segment is
/// therefore treated like memory-mapped I/O — memory outside any Rust allocation, changed
/// from outside the program — and touched only in ways that stay defined when it changes:
///
/// - [`read_at`](SharedMemory::read_at), [`write_at`](SharedMemory::write_at) and
///   [`to_vec`](SharedMemory::to_vec) copy with volatile accesses, which the compiler may
///   neither elide nor assume stable. A copy that races with another process's write
///   sees some mix of old and new bytes; it is never undefined behaviour. Agree on *when*
///   to read with a lock ([`Lock`](crate::Lock)) or an atomic (an integer
///   [`Value`](crate::Value));
/// - typed shared data ([`Value`](crate::Value), [`Array`](crate::Array), the locks)
///   lives in segments of its own and is touched only through atomics and pthread calls;
/// - [`as_ptr`](SharedMemory::as_ptr) for everything else, and the `unsafe`
///   [`as_slice`](SharedMemory::as_slice) / [`as_mut_slice`](SharedMemory::as_mut_slice)
///   for when the caller can promise that nobody writes (or, for the mutable one, reads)
///   the segment while the slice lives — filling a segment before handing it out, say.
///
/// # Crossing process boundaries
///
/// A `SharedMemory` serializes as its descriptor (through [`crate::handle`]), its size
/// and its name, so it can be passed to a spawn or forkserver child as an argument or sent
/// over a [`Connection`](crate::Connection); the receiver maps the same memory, even if
/// the name was unlinked meanwhile. A forked child inherits the mapping itself.
/// Anonymous segments are sealed at their size (`F_SEAL_SHRINK | F_SEAL_GROW`), so no
/// holder can shrink one and make the others' accesses fault.
///
/// # Examples
///
/// ```
/// use flotilla_ipc::SharedMemory;
///
/// let shm = SharedMemory::new(4096).unwrap();
/// shm.write_at(10, b"hello").unwrap();
/// let mut buf = [0u8; 5];
/// shm.read_at(10, &mut buf).unwrap();
/// assert_eq!(&buf, b"hello");
/// assert_eq!(shm.size(), 4096);
/// assert_eq!(shm.name(), None);
/// ```
pub struct SharedMemory {
    ptr: NonNull<u8>,
    size: usize,
    fd: OwnedFd,
    /// The name without its leading slash.
    name: Option<String>,
    /// The pid of the process that unlinks the name when it drops the segment; 0 for none.
    unlink_pid: AtomicI32,
}

// SAFETY: the mapping belongs to this value and stays valid until it is dropped, on
// whatever thread; the descriptor is an `OwnedFd`. Moving the value moves nothing the
// mapping depends on.
unsafe impl Send for SharedMemory {}
// SAFETY: every safe access through `&self` is a volatile copy or reads immutable fields;
// the memory is shared with other processes anyway, so other threads add nothing new.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Creates an anonymous segment of `size` bytes (a memfd), zeroed, sealed at that
    /// size. It has no name; give it to other processes by fork, as a process argument or
    /// over a `Connection`.
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidSize`] for a size of 0; [`ShmError::Os`] when the system
    /// refuses the memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = flotilla_ipc::SharedMemory::new(100).unwrap();
    /// assert_eq!(shm.to_vec(), vec![0; 100]);
    /// ```
    pub fn new(size: usize) -> Result<Self, ShmError> {
        let len = nonzero(size)?;
        let fd = memfd_create(
            c"flotilla-shm",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| ShmError::os("memfd_create", e))?;
        nix::unistd::ftruncate(&fd, file_len(size)?).map_err(|e| ShmError::os("ftruncate", e))?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        nix::fcntl::fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))
            .map_err(|e| ShmError::os("fcntl(F_ADD_SEALS)", e))?;
        Self::map(fd, len, None, 0)
    }

    /// Creates a named segment of `size` bytes in `/dev/shm`, zeroed, which other
    /// processes can attach to with [`open`](Self::open). The name may be given with or
    /// without its leading slash; it must not contain another one.
    ///
    /// This process unlinks the name when it drops the segment (see
    /// [`set_unlink_on_drop`](Self::set_unlink_on_drop) to keep it).
    ///
    /// # Errors
    ///
    /// [`ShmError::AlreadyExists`] if the name is taken; [`ShmError::InvalidSize`] for a
    /// size of 0; [`ShmError::InvalidName`] for a malformed name; [`ShmError::Os`] when
    /// the system refuses the memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use flotilla_ipc::SharedMemory;
    ///
    /// let name = format!("flotilla-doc-create-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 64).unwrap();
    /// assert_eq!(shm.name(), Some(name.as_str()));
    /// assert!(SharedMemory::create(&name, 64).is_err(), "the name is taken");
    /// drop(shm); // unlinks the name
    /// assert!(SharedMemory::open(&name).is_err());
    /// ```
    pub fn create(name: &str, size: usize) -> Result<Self, ShmError> {
        let len = nonzero(size)?;
        let (name, path) = shm_path(name)?;
        let fd = shm_open(
            path.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| match e {
            Errno::EEXIST => ShmError::AlreadyExists { name: name.clone() },
            e => ShmError::os("shm_open", e),
        })?;
        // Until the segment is mapped, a failure must not leave the new name behind.
        let sized = file_len(size).and_then(|off| {
            nix::unistd::ftruncate(&fd, off).map_err(|e| ShmError::os("ftruncate", e))
        });
        let pid = nix::unistd::getpid().as_raw();
        match sized.and_then(|()| Self::map(fd, len, Some(name), pid)) {
            Ok(shm) => {
                track(NameEvent::Owned, shm.name.as_deref().unwrap_or_default());
                Ok(shm)
            }
            Err(e) => {
                let _ = shm_unlink(path.as_str());
                Err(e)
            }
        }
    }

    /// Attaches to the named segment `name` (with or without its leading slash), as
    /// Python's `SharedMemory(name=...)` does. Its size is the segment's. Dropping the
    /// result never unlinks the name.
    ///
    /// # Errors
    ///
    /// [`ShmError::NotFound`] if there is no such segment; [`ShmError::InvalidName`] for
    /// a malformed name; [`ShmError::Unsized`] for a segment of size 0 (its creator has
    /// not sized it); [`ShmError::Os`] if the system refuses the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// use flotilla_ipc::SharedMemory;
    ///
    /// let name = format!("flotilla-doc-open-{}", std::process::id());
    /// let created = SharedMemory::create(&name, 32).unwrap();
    /// created.write_at(0, b"hi").unwrap();
    ///
    /// let attached = SharedMemory::open(&name).unwrap();
    /// assert_eq!(attached.size(), 32);
    /// assert_eq!(&attached.to_vec()[..2], b"hi");
    /// drop(attached); // leaves the name alone
    /// assert!(SharedMemory::open(&name).is_ok());
    /// ```
    pub fn open(name: &str) -> Result<Self, ShmError> {
        let (name, path) = shm_path(name)?;
        let fd = shm_open(path.as_str(), OFlag::O_RDWR, Mode::empty()).map_err(|e| match e {
            Errno::ENOENT => ShmError::NotFound { name: name.clone() },
            e => ShmError::os("shm_open", e),
        })?;
        let size = file_size(&fd)?;
        let len =
            NonZeroUsize::new(size).ok_or_else(|| ShmError::Unsized { name: name.clone() })?;
        Self::map(fd, len, Some(name), 0)
    }

    /// Maps a segment received from another process.
    fn received(fd: OwnedFd, size: usize, name: Option<String>) -> Result<Self, ShmError> {
        let len = nonzero(size)?;
        if let Some(name) = &name {
            shm_path(name)?;
        }
        let actual = file_size(&fd)?;
        if actual < size {
            return Err(ShmError::InvalidSize {
                size,
                problem: "more than the received segment's file holds",
            });
        }
        Self::map(fd, len, name, 0)
    }

    fn map(
        fd: OwnedFd,
        len: NonZeroUsize,
        name: Option<String>,
        unlink_pid: i32,
    ) -> Result<Self, ShmError> {
        // SAFETY: the kernel chooses the address (`None`), so the new mapping overlaps no
        // existing object; `fd` is a shared-memory file of at least `len` bytes (sized by
        // our caller, or checked with fstat), so every page of the mapping is backed.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| ShmError::os("mmap", e))?;
        Ok(SharedMemory {
            ptr: ptr.cast(),
            size: len.get(),
            fd,
            name,
            unlink_pid: AtomicI32::new(unlink_pid),
        })
    }

    /// The segment's size in bytes.
    ///
    /// ```
    /// assert_eq!(flotilla_ipc::SharedMemory::new(10).unwrap().size(), 10);
    /// ```
    pub fn size(&self) -> usize {
        self.size
    }

    /// The segment's name, without its leading slash; `None` for an anonymous segment.
    ///
    /// ```
    /// assert_eq!(flotilla_ipc::SharedMemory::new(10).unwrap().name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The first byte of the mapping, valid for [`size`](Self::size) bytes while `self`
    /// lives, at an address aligned to the page size. Other processes may read and write
    /// the memory at any time: access it with atomics or volatile operations (see
    /// [why there is no safe `&[u8]`](SharedMemory#access-why-there-is-no-safe-u8)).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let shm = flotilla_ipc::SharedMemory::new(8).unwrap();
    /// // SAFETY: the mapping is page-aligned, 8 bytes long, and lives as long as `shm`;
    /// // an atomic tolerates other processes writing the same word.
    /// let word = unsafe { &*shm.as_ptr().cast::<AtomicU64>() };
    /// word.fetch_add(5, Ordering::SeqCst);
    /// assert_eq!(shm.to_vec(), 5u64.to_ne_bytes());
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the segment, with volatile
    /// reads. A write by another process during the copy may show up as a mix of old and
    /// new bytes.
    ///
    /// # Errors
    ///
    /// [`ShmError::OutOfBounds`] if the range does not lie inside the segment; nothing
    /// is copied then.
    ///
    /// ```
    /// let shm = flotilla_ipc::SharedMemory::new(16).unwrap();
    /// shm.write_at(3, &[1, 2, 3]).unwrap();
    /// let mut buf = [0; 4];
    /// shm.read_at(2, &mut buf).unwrap();
    /// assert_eq!(buf, [0, 1, 2, 3]);
    /// assert!(shm.read_at(14, &mut buf).is_err());
    /// ```
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        let src = self.range(offset, buf.len())?;
        // SAFETY: `range` checked that `offset..offset + len` lies in the mapping, which
        // lives as long as `&self`; `buf` is private memory of the same length.
        unsafe { copy_out(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the segment starting at `offset`, with volatile writes.
    ///
    /// # Errors
    ///
    /// [`ShmError::OutOfBounds`] if the range does not lie inside the segment; nothing
    /// is copied then.
    ///
    /// ```
    /// let shm = flotilla_ipc::SharedMemory::new(4).unwrap();
    /// shm.write_at(1, b"abc").unwrap();
    /// assert_eq!(shm.to_vec(), b"\0abc");
    /// assert!(shm.write_at(2, b"abc").is_err());
    /// ```
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        let dst = self.range(offset, data.len())?;
        // SAFETY: as in `read_at`, with the roles of the two buffers swapped.
        unsafe { copy_in(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    /// A copy of the whole segment.
    ///
    /// ```
    /// let shm = flotilla_ipc::SharedMemory::new(3).unwrap();
    /// assert_eq!(shm.to_vec(), [0, 0, 0]);
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.size];
        // SAFETY: the whole mapping is `size` bytes, as is `out`.
        unsafe { copy_out(self.as_ptr(), out.as_mut_ptr(), self.size) };
        out
    }

    /// The segment as a byte slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody — no thread of this process, no other process —
    /// may write to the segment: a `&[u8]` promises bytes that do not change.
    ///
    /// ```
    /// let shm = flotilla_ipc::SharedMemory::new(4).unwrap();
    /// shm.write_at(0, b"abcd").unwrap();
    /// // SAFETY: the segment was never shared, so nobody else can write to it.
    /// assert_eq!(unsafe { shm.as_slice() }, b"abcd");
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `size` readable bytes that live as long as `&self`; the
        // caller promises that nobody writes them while the slice lives.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size) }
    }

    /// The segment as a mutable byte slice, for filling it at full speed.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody else — no other thread or call on this process, no
    /// other process — may read or write the segment, and this must be the only slice
    /// made of it.
    ///
    /// ```
    /// let shm = flotilla_ipc::SharedMemory::new(4).unwrap();
    /// // SAFETY: the segment was never shared, and no other view of it exists.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"wxyz");
    /// assert_eq!(shm.to_vec(), b"wxyz");
    /// ```
    #[allow(clippy::mut_from_ref)] // The memory is shared by nature; the caller promises exclusivity.
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is `size` writable bytes that live as long as `&self`; the
        // caller promises that no other access to them happens while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size) }
    }

    /// Whether dropping this value unlinks the segment's name: true for the creator of a
    /// named segment, false otherwise.
    ///
    /// ```
    /// use flotilla_ipc::SharedMemory;
    ///
    /// let name = format!("flotilla-doc-unlinks-{}", std::process::id());
    /// let created = SharedMemory::create(&name, 8).unwrap();
    /// let attached = SharedMemory::open(&name).unwrap();
    /// assert!(created.unlinks_on_drop());
    /// assert!(!attached.unlinks_on_drop());
    /// ```
    pub fn unlinks_on_drop(&self) -> bool {
        self.name.is_some()
            && self.unlink_pid.load(Ordering::Relaxed) == nix::unistd::getpid().as_raw()
    }

    /// Chooses whether dropping this value (in this process) unlinks the segment's name.
    /// `false` keeps a created segment in `/dev/shm` after this process is done with it;
    /// `true` makes an attached one unlink it. No effect on an anonymous segment.
    ///
    /// ```
    /// use flotilla_ipc::SharedMemory;
    ///
    /// let name = format!("flotilla-doc-keep-{}", std::process::id());
    /// let created = SharedMemory::create(&name, 8).unwrap();
    /// created.set_unlink_on_drop(false);
    /// drop(created);
    /// let attached = SharedMemory::open(&name).unwrap(); // still there
    /// attached.unlink().unwrap();
    /// ```
    pub fn set_unlink_on_drop(&self, unlink: bool) {
        let pid = if unlink {
            nix::unistd::getpid().as_raw()
        } else {
            0
        };
        self.unlink_pid.store(pid, Ordering::Relaxed);
        if let Some(name) = &self.name {
            let event = if unlink {
                NameEvent::Owned
            } else {
                NameEvent::Released
            };
            track(event, name);
        }
    }

    /// Removes the segment's name from `/dev/shm` now, as Python's `unlink()` does. The
    /// memory stays mapped in every process that has it; nobody can attach by name any
    /// more. Dropping this value afterwards does not unlink again.
    ///
    /// # Errors
    ///
    /// [`ShmError::Anonymous`] for an anonymous segment; [`ShmError::NameReused`] if the
    /// name now names a different segment (which is left alone); [`ShmError::NotFound`]
    /// if the name is already gone; [`ShmError::Os`] for other refusals.
    ///
    /// ```
    /// use flotilla_ipc::SharedMemory;
    ///
    /// let name = format!("flotilla-doc-unlink-{}", std::process::id());
    /// let shm = SharedMemory::create(&name, 8).unwrap();
    /// shm.unlink().unwrap();
    /// assert!(SharedMemory::open(&name).is_err());
    /// shm.write_at(0, b"still ok").unwrap(); // the mapping outlives the name
    /// ```
    pub fn unlink(&self) -> Result<(), ShmError> {
        let Some(name) = &self.name else {
            return Err(ShmError::Anonymous);
        };
        self.unlink_pid.store(0, Ordering::Relaxed);
        let path = format!("/{name}");
        let not_found = |e| match e {
            Errno::ENOENT => ShmError::NotFound { name: name.clone() },
            e => ShmError::os("shm_unlink", e),
        };
        let unlinked = match self.is_named_by(&path) {
            Ok(true) => shm_unlink(path.as_str()).map_err(not_found),
            Ok(false) => Err(ShmError::NameReused { name: name.clone() }),
            Err(e) => Err(e),
        };
        track(NameEvent::Released, name);
        unlinked
    }

    /// Whether `path` in `/dev/shm` names this very segment (same device and inode).
    fn is_named_by(&self, path: &str) -> Result<bool, ShmError> {
        let theirs = shm_open(path, OFlag::O_RDONLY, Mode::empty()).map_err(|e| match e {
            Errno::ENOENT => ShmError::NotFound {
                name: path.trim_start_matches('/').to_owned(),
            },
            e => ShmError::os("shm_open", e),
        })?;
        let theirs = fstat(&theirs).map_err(|e| ShmError::os("fstat", e))?;
        let ours = fstat(&self.fd).map_err(|e| ShmError::os("fstat", e))?;
        Ok(theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)
    }

    /// The address of `offset..offset + len`, if that lies inside the segment.
    fn range(&self, offset: usize, len: usize) -> Result<*mut u8, ShmError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => {
                // SAFETY: `offset <= end <= size`, so the result is inside the mapping or
                // one past its end.
                Ok(unsafe { self.as_ptr().add(offset) })
            }
            end => Err(ShmError::OutOfBounds {
                offset,
                end: end.unwrap_or(usize::MAX),
                size: self.size,
            }),
        }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `size` describe the mapping made in `map`, unmapped nowhere
        // else; every view of it (slices, guards, atomics) borrows `self`, so none is left.
        if let Err(e) = unsafe { munmap(self.ptr.cast(), self.size) } {
            flotilla_core::event!(flotilla_core::log::Level::WARN, error = %e, "munmap of a shared memory segment failed");
        }
        if self.unlinks_on_drop() {
            let name = self.name.as_deref().unwrap_or_default();
            match self.unlink() {
                Ok(()) => {}
                // Someone unlinked it first (maybe with `unlink()` in another process).
                Err(ShmError::NotFound { .. }) => {}
                Err(e) => {
                    flotilla_core::event!(flotilla_core::log::Level::WARN, name, error = %e, "could not unlink a shared memory segment")
                }
            }
        }
    }
}

impl AsFd for SharedMemory {
    /// The descriptor of the segment's memory file.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("ptr", &self.ptr)
            .field("unlinks_on_drop", &self.unlinks_on_drop())
            .finish()
    }
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("SharedMemory", 3)?;
        s.serialize_field("fd", &Exported(self.fd.as_fd()))?;
        s.serialize_field("size", &self.size)?;
        s.serialize_field("name", &self.name)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The fields in the order `serialize` writes them.
        #[derive(Deserialize)]
        #[serde(rename = "SharedMemory")]
        struct Received {
            fd: Fd,
            size: usize,
            name: Option<String>,
        }
        let r = Received::deserialize(deserializer)?;
        SharedMemory::received(r.fd.into_inner(), r.size, r.name).map_err(D::Error::custom)
    }
}

fn nonzero(size: usize) -> Result<NonZeroUsize, ShmError> {
    NonZeroUsize::new(size).ok_or(ShmError::InvalidSize {
        size,
        problem: "a segment cannot be empty",
    })
}

fn file_len(size: usize) -> Result<libc::off_t, ShmError> {
    libc::off_t::try_from(size).map_err(|_| ShmError::InvalidSize {
        size,
        problem: "too large for a file",
    })
}

/// The size of a segment's file (0 for the negative size no file has).
fn file_size(fd: &OwnedFd) -> Result<usize, ShmError> {
    let stat = fstat(fd).map_err(|e| ShmError::os("fstat", e))?;
    Ok(usize::try_from(stat.st_size).unwrap_or(0))
}

/// Checks a segment name; returns it without, and its `shm_open` path with, a leading
/// slash.
fn shm_path(name: &str) -> Result<(String, String), ShmError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let problem = if bare.is_empty() {
        Some("is empty")
    } else if bare.contains('/') {
        Some("contains a '/' after its first character")
    } else if bare.contains('\0') {
        Some("contains a NUL byte")
    } else if bare.len() > NAME_MAX {
        Some("is longer than 255 bytes")
    } else if bare == "." || bare == ".." {
        Some("is not a file name")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ShmError::InvalidName {
            name: name.to_owned(),
            problem,
        }),
        None => Ok((bare.to_owned(), format!("/{bare}"))),
    }
}

/// Copies `len` bytes out of shared memory at `src` into private memory at `dst`, with
/// volatile reads: aligned words where it can, single bytes at the edges.
///
/// # Safety
///
/// `src` must be valid for reads of `len` bytes (it may change meanwhile), `dst` valid
/// for writes of `len` bytes, and the two must not overlap.
unsafe fn copy_out(src: *const u8, dst: *mut u8, len: usize) {
    let head = src.align_offset(8).min(len);
    let words = (len - head) / 8;
    // SAFETY: every offset below is less than `len`, so inside both buffers (caller's
    // promise); the word reads start at `src + head`, which is 8-aligned.
    unsafe {
        for i in 0..head {
            dst.add(i).write(src.add(i).read_volatile());
        }
        for w in 0..words {
            let at = head + 8 * w;
            let word = src.add(at).cast::<u64>().read_volatile();
            dst.add(at).cast::<u64>().write_unaligned(word);
        }
        for i in head + 8 * words..len {
            dst.add(i).write(src.add(i).read_volatile());
        }
    }
}

/// Copies `len` bytes from private memory at `src` into shared memory at `dst`, with
/// volatile writes.
///
/// # Safety
///
/// As for [`copy_out`], with `dst` the shared side (valid for writes).
unsafe fn copy_in(src: *const u8, dst: *mut u8, len: usize) {
    let head = dst.align_offset(8).min(len);
    let words = (len - head) / 8;
    // SAFETY: as in `copy_out`; here the word writes start at the 8-aligned `dst + head`.
    unsafe {
        for i in 0..head {
            dst.add(i).write_volatile(src.add(i).read());
        }
        for w in 0..words {
            let at = head + 8 * w;
            let word = src.add(at).cast::<u64>().read_unaligned();
            dst.add(at).cast::<u64>().write_volatile(word);
        }
        for i in head + 8 * words..len {
            dst.add(i).write_volatile(src.add(i).read());
        }
    }
}

#[cfg(test)]
mod tests;
