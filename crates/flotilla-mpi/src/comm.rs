//! The few MPI calls flotilla-mpi makes, over raw handles: a duplicated communicator,
//! blocking and non-blocking sends of bytes, and matched probes (`MPI_Improbe` +
//! `MPI_Mrecv`, which are safe when another thread probes too).
//!
//! Raw calls rather than rsmpi's typed ones for two reasons: a non-blocking send must
//! outlive any one scope (it is tested for completion on later turns of the progress
//! loop, owning its buffer meanwhile), and the communicator moves to the progress thread,
//! which rsmpi's handle types do not promise to allow on every MPI.
//!
//! Every call is checked; the communicator keeps MPI's default error handler
//! (`MPI_ERRORS_ARE_FATAL`), so in practice an MPI failure ends the whole job, as MPI
//! programs end (see the crate's "When a rank dies").

use std::os::raw::{c_int, c_void};

use mpi::ffi;

/// A communicator handle, and the calls made on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Comm {
    raw: ffi::MPI_Comm,
}

// SAFETY: an MPI communicator handle is a plain value (an integer in MPICH, a pointer to
// a library object in Open MPI) that any thread may use when the library was
// initialised at MPI_THREAD_SERIALIZED or above and calls are not made concurrently:
// `init` and `comm_executor` check the level, and each communicator of this crate is
// used by one thread at a time (the progress thread while an executor lives).
unsafe impl Send for Comm {}

/// MPI's element type for bytes.
fn bytes_type() -> ffi::MPI_Datatype {
    // SAFETY: a constant of the MPI library, valid once MPI is initialised (every caller
    // holds a communicator, which exists only then).
    unsafe { ffi::RSMPI_UINT8_T }
}

fn check(rc: c_int, what: &str) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("{what} failed with MPI error code {rc}"))
    }
}

/// A message's length as MPI's count, or why it is too long for one message.
fn count(len: usize) -> Result<c_int, String> {
    c_int::try_from(len).map_err(|_| {
        format!(
            "a message of {len} bytes is over MPI's limit of {} bytes per message",
            c_int::MAX
        )
    })
}

impl Comm {
    /// A duplicate of `raw` (collective over it): messages on it never match the user's.
    ///
    /// # Safety
    ///
    /// `raw` must be a live intra-communicator, and MPI initialised; every rank of it
    /// must make the same call.
    pub(crate) unsafe fn duplicate(raw: ffi::MPI_Comm) -> Result<Comm, String> {
        let mut new = std::mem::MaybeUninit::<ffi::MPI_Comm>::uninit();
        // SAFETY: per this function's contract `raw` is live; MPI writes the new handle.
        let rc = unsafe { ffi::MPI_Comm_dup(raw, new.as_mut_ptr()) };
        check(rc, "MPI_Comm_dup")?;
        // SAFETY: MPI_Comm_dup succeeded, so it wrote the handle.
        let raw = unsafe { new.assume_init() };
        Ok(Comm { raw })
    }

    /// Frees a communicator made by [`Comm::duplicate`] (collective).
    pub(crate) fn free(mut self) {
        // SAFETY: `self` came from `duplicate`, and no request on it is pending.
        unsafe { ffi::MPI_Comm_free(&mut self.raw) };
    }

    /// This process's rank.
    pub(crate) fn rank(&self) -> i32 {
        let mut rank: c_int = -1;
        // SAFETY: `self.raw` is a live communicator; MPI writes one int.
        unsafe { ffi::MPI_Comm_rank(self.raw, &mut rank) };
        rank
    }

    /// The number of ranks.
    pub(crate) fn size(&self) -> i32 {
        let mut size: c_int = 0;
        // SAFETY: as in `rank`.
        unsafe { ffi::MPI_Comm_size(self.raw, &mut size) };
        size
    }

    /// Every rank's `value`, in rank order (collective).
    pub(crate) fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>, String> {
        let mut all = vec![0u64; self.size().max(0) as usize];
        // SAFETY: one u64 sent from `value`, one received per rank into `all`, which has
        // room for `size` of them; the type constant is valid while MPI is initialised.
        let rc = unsafe {
            ffi::MPI_Allgather(
                (&value as *const u64).cast::<c_void>(),
                1,
                ffi::RSMPI_UINT64_T,
                all.as_mut_ptr().cast::<c_void>(),
                1,
                ffi::RSMPI_UINT64_T,
                self.raw,
            )
        };
        check(rc, "MPI_Allgather")?;
        Ok(all)
    }

    /// Sends `bytes` to `dest`, blocking until the buffer may be reused.
    pub(crate) fn send(&self, dest: i32, tag: i32, bytes: &[u8]) -> Result<(), String> {
        let n = count(bytes.len())?;
        // SAFETY: MPI reads `n` bytes from `bytes`, which lives until the call returns
        // (a blocking send is done with its buffer when it returns).
        let rc = unsafe {
            ffi::MPI_Send(
                bytes.as_ptr().cast::<c_void>(),
                n,
                bytes_type(),
                dest,
                tag,
                self.raw,
            )
        };
        check(rc, "MPI_Send")
    }

    /// Starts sending `bytes` to `dest` without waiting: the send owns the buffer until
    /// [`Sending::done`] says it is finished.
    pub(crate) fn start_send(
        &self,
        dest: i32,
        tag: i32,
        bytes: Vec<u8>,
    ) -> Result<Sending, String> {
        let n = count(bytes.len())?;
        let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: MPI reads `n` bytes from the buffer until the request completes; the
        // buffer moves into the returned `Sending`, which keeps it (a Vec's heap block
        // does not move) until `MPI_Test` reports completion, or leaks it.
        let rc = unsafe {
            ffi::MPI_Isend(
                bytes.as_ptr().cast::<c_void>(),
                n,
                bytes_type(),
                dest,
                tag,
                self.raw,
                request.as_mut_ptr(),
            )
        };
        check(rc, "MPI_Isend")?;
        Ok(Sending {
            // SAFETY: MPI_Isend succeeded, so it wrote the request.
            request: unsafe { request.assume_init() },
            buffer: bytes,
            finished: false,
        })
    }

    /// Takes one message from `source` (any rank when `None`) with tag `tag` (any tag
    /// when `None`), if one has arrived: its source, its tag and its bytes.
    pub(crate) fn try_receive(
        &self,
        source: Option<i32>,
        tag: Option<i32>,
    ) -> Result<Option<(i32, i32, Vec<u8>)>, String> {
        // SAFETY: constants of the MPI library, valid while it is initialised.
        let (any_source, any_tag) = unsafe { (ffi::RSMPI_ANY_SOURCE, ffi::RSMPI_ANY_TAG) };
        let mut flag: c_int = 0;
        let mut message = std::mem::MaybeUninit::<ffi::MPI_Message>::uninit();
        let mut status = std::mem::MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: MPI writes the flag, and when it is set the message and the status.
        let rc = unsafe {
            ffi::MPI_Improbe(
                source.unwrap_or(any_source),
                tag.unwrap_or(any_tag),
                self.raw,
                &mut flag,
                message.as_mut_ptr(),
                status.as_mut_ptr(),
            )
        };
        check(rc, "MPI_Improbe")?;
        if flag == 0 {
            return Ok(None);
        }
        // SAFETY: the probe matched, so MPI wrote both.
        let (mut message, mut status) = unsafe { (message.assume_init(), status.assume_init()) };
        let mut n: c_int = 0;
        // SAFETY: `status` describes the matched message; MPI writes one int.
        let rc = unsafe { ffi::MPI_Get_count(&status, bytes_type(), &mut n) };
        check(rc, "MPI_Get_count")?;
        let len = usize::try_from(n).map_err(|_| format!("MPI_Get_count gave {n}"))?;
        let mut bytes: Vec<u8> = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|_| format!("no memory for a message of {len} bytes"))?;
        // SAFETY: the buffer has room for `len` bytes, the matched message's size; MPI
        // writes them and consumes the message handle.
        let rc = unsafe {
            ffi::MPI_Mrecv(
                bytes.as_mut_ptr().cast::<c_void>(),
                n,
                bytes_type(),
                &mut message,
                &mut status,
            )
        };
        check(rc, "MPI_Mrecv")?;
        // SAFETY: MPI_Mrecv succeeded and wrote the `len` bytes of the message.
        unsafe { bytes.set_len(len) };
        Ok(Some((status.MPI_SOURCE, status.MPI_TAG, bytes)))
    }
}

/// A non-blocking send under way, owning its buffer.
#[derive(Debug)]
pub(crate) struct Sending {
    request: ffi::MPI_Request,
    buffer: Vec<u8>,
    finished: bool,
}

impl Sending {
    /// True once MPI is done with the buffer.
    pub(crate) fn done(&mut self) -> Result<bool, String> {
        if self.finished {
            return Ok(true);
        }
        let mut flag: c_int = 0;
        // SAFETY: the request is live (not yet reported complete, which frees it); MPI
        // writes the flag and, on completion, sets the request to MPI_REQUEST_NULL.
        let rc = unsafe { ffi::MPI_Test(&mut self.request, &mut flag, ffi::RSMPI_STATUS_IGNORE) };
        check(rc, "MPI_Test")?;
        self.finished = flag != 0;
        Ok(self.finished)
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        if !self.finished {
            // MPI may still read the buffer: leave it to MPI rather than free it under
            // it (this happens only when the job is ending anyway).
            std::mem::forget(std::mem::take(&mut self.buffer));
        }
    }
}
