//! The child side: how a new process becomes a flotilla worker before any user code
//! runs, and how a task is named across an `exec`.
//!
//! # Recognising a worker
//!
//! A spawned child is a fresh `exec` of the parent's binary, with the environment
//! variable [`ROLE_VAR`] saying what it is for and its bootstrap socket at descriptor
//! [`BOOT_FD`]. [`dispatch`] reads the variable, removes it, and runs the role — one
//! task, or the forkserver — and then ends the process with `_exit`; it never returns
//! into `main` for a worker.
//!
//! [`dispatch`] runs from two places. A function pointer in the ELF `.init_array`
//! section calls it when the binary starts, before `main` — also before the test
//! harness's `main`, which is what makes multi-process tests work under plain
//! `cargo test` with no setup. And `flotilla::init()`, called at the top of `main`, runs
//! it again: the explicit form, and the safety net should the linker ever drop the
//! section. A process that was started as a worker but reaches flotilla's process code
//! without having dispatched refuses to start processes of its own (see [`guard`]), so
//! a missing bootstrap can never become a fork bomb.
//!
//! # Naming a task across `exec`
//!
//! Parent and child run the same file (`/proc/self/exe`), so a function is named by its
//! address relative to a base function of the same binary. The function is always a
//! monomorphised [`trampoline`] for the user's zero-sized target type, which decodes
//! the arguments, conjures the (data-less) target, calls it, and encodes the result.
//! The child checks a [`fingerprint`] of the build first (its build-id, or a hash of
//! its bytes; never the file's metadata) and refuses a task from a different build.

use std::any::TypeId;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use flotilla_core::codec;
use flotilla_ipc::{Connection, handle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::child::Report;
use crate::error::Error;
use crate::state::{self, ProcessInfo};
use crate::sys;
use crate::target::{One, Target as TargetFn};

/// The environment variable that marks a flotilla worker, and its role.
const ROLE_VAR: &str = "FLOTILLA_WORKER";
/// Role: run the one task that arrives on the bootstrap socket.
pub(crate) const ROLE_TASK: &str = "task";
/// Role: be the forkserver, serving requests on the bootstrap socket.
pub(crate) const ROLE_FORKSERVER: &str = "forkserver";
/// Role: be this process's shared-memory name tracker (see `tracker`).
pub(crate) const ROLE_TRACKER: &str = "tracker";
/// Where a spawned child finds its bootstrap socket.
const BOOT_FD: RawFd = 3;

/// The first message a task child receives.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    pub(crate) fingerprint: u64,
    /// The trampoline's address minus [`entry_base`]'s.
    pub(crate) entry: usize,
    /// The encoded arguments; their descriptors travel with this frame.
    #[serde(with = "flotilla_core::codec::bytes")]
    pub(crate) args: Vec<u8>,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) parent: (String, i32),
    /// `log::log_to_stderr`'s level in the parent (0: none), and its worker setup
    /// function's offset plus one (0: none): see `log`.
    pub(crate) log: (u8, usize),
}

/// A task's entry: decodes the arguments, runs the target, encodes the result.
pub(crate) type Entry = fn(&[u8], Vec<OwnedFd>) -> EntryResult;

/// What an entry returns: the encoded value and its descriptors, or why the arguments
/// or the value could not be decoded or encoded.
pub(crate) type EntryResult = Result<(Vec<u8>, Vec<OwnedFd>), String>;

#[used]
#[unsafe(link_section = ".init_array")]
static BOOT_HOOK: extern "C" fn() = boot_hook;

extern "C" fn boot_hook() {
    dispatch();
}

/// Runs this process's worker role, if it has one, and never returns then. Idempotent,
/// and cheap (one environment lookup) in a process that is not a worker.
///
/// Call it first thing in `main`, before any thread starts: Python's
/// `if __name__ == "__main__":`.
pub fn init() {
    dispatch();
}

fn dispatch() {
    // Every process that links flotilla-process has its named segments tracked.
    flotilla_ipc::set_name_tracker(crate::tracker::track);
    let Some(role) = std::env::var_os(ROLE_VAR) else {
        return;
    };
    // SAFETY: dispatch runs before `main` (from .init_array) or, per `init`'s contract,
    // at the top of `main` before any thread exists; nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(ROLE_VAR) };
    if !is_socket(BOOT_FD) {
        eprintln!(
            "flotilla: this process was started as a flotilla worker ({ROLE_VAR}={role:?}) \
             but has no bootstrap socket at descriptor {BOOT_FD}; exiting"
        );
        sys::exit_now(70)
    }
    // It arrived without close-on-exec (dup2 clears it): no program this one runs may
    // inherit it, and no fork child either (see `fds`).
    let _ = nix::fcntl::fcntl(
        // SAFETY: BOOT_FD is open (checked just above) and outlives this call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(BOOT_FD) },
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    crate::fds::register(BOOT_FD);
    // SAFETY: BOOT_FD is an open socket (checked just above): the bootstrap socket the
    // parent placed there before exec, which nothing in this fresh process has claimed.
    let boot = Connection::from_socket(unsafe { OwnedFd::from_raw_fd(BOOT_FD) });
    if role == ROLE_TASK {
        run_task(boot, true)
    } else if role == ROLE_FORKSERVER {
        crate::forkserver::serve(boot)
    } else if role == ROLE_TRACKER {
        crate::tracker::serve(boot)
    } else {
        eprintln!("flotilla: unknown worker role {role:?}; exiting");
        sys::exit_now(70)
    }
}

/// True when `fd` is an open socket.
fn is_socket(fd: RawFd) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer it is given and reads nothing else;
    // on failure (say EBADF) the buffer is not read.
    let rc = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
    // SAFETY: fstat succeeded, so it filled the buffer.
    rc == 0 && (unsafe { stat.assume_init() }.st_mode & libc::S_IFMT) == libc::S_IFSOCK
}

/// Starts a fresh copy of this program to take `role`, with `boot` as its bootstrap
/// socket (at [`BOOT_FD`]; our copy is closed here); the child's pid.
pub(crate) fn spawn(role: &str, boot: Connection) -> Result<i32, Error> {
    sys::spawn_self(&[(ROLE_VAR, role.to_owned())], boot.as_fd(), BOOT_FD)
}

/// Refuses to start processes from a process that was started as a worker but has not
/// run its role: the bootstrap did not run, and `main` is running instead.
pub(crate) fn guard() -> Result<(), Error> {
    // Checked once: every start would otherwise take the environment's lock and scan it.
    static CLEAR: AtomicBool = AtomicBool::new(false);
    if CLEAR.load(Ordering::Relaxed) {
        return Ok(());
    }
    if std::env::var_os(ROLE_VAR).is_some() {
        return Err(Error::Unsupported(
            "this process was started as a flotilla worker but never ran its task: \
             call flotilla::init() at the top of main"
                .into(),
        ));
    }
    CLEAR.store(true, Ordering::Relaxed);
    Ok(())
}

/// Receives a task on `boot`, runs it, reports, and exits. `check_parent` applies the
/// daemon flag's parent-death rule relative to the parent named in the task (a
/// forkserver child has it applied by the server instead).
pub(crate) fn run_task(boot: Connection, check_parent: bool) -> ! {
    crate::fds::register(boot.as_fd().as_raw_fd());
    let (bytes, fds) = match boot.recv_frame() {
        Ok(frame) => frame,
        // The parent went away before sending the task: nothing to do.
        Err(_) => sys::exit_now(0),
    };
    let task: Boot = match codec::decode(&bytes) {
        Ok(task) => task,
        Err(e) => refuse(&boot, format!("the task message could not be decoded: {e}")),
    };
    if task.fingerprint != fingerprint() {
        refuse(
            &boot,
            format!(
                "the task comes from a different build of this program \
                 (fingerprint {:016x}, this binary's is {:016x})",
                task.fingerprint,
                fingerprint()
            ),
        );
    }
    if check_parent && task.daemon {
        sys::watch_parent(task.parent.1);
    }
    state::reset_after_fork(
        ProcessInfo {
            name: task.name.clone(),
            pid: std::process::id() as i32,
        },
        ProcessInfo {
            name: task.parent.0.clone(),
            pid: task.parent.1,
        },
    );
    // SAFETY: the fingerprint matched, so this is the parent's very binary.
    let entry = unsafe { entry_at(task.entry) };
    let run = || {
        name_panics();
        // SAFETY: the fingerprint matched: the setup's offset is of this very binary.
        unsafe { crate::log::apply_in_child(task.log.0, task.log.1) };
        let _span = flotilla_core::log::process_span().entered();
        entry(&task.args, fds)
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok((value, fds))) => finish(&boot, None, &Report::Returned(value), &fds, 0),
        Ok(Err(message)) => refuse(&boot, message),
        Err(payload) => finish(
            &boot,
            None,
            &Report::Panicked(flotilla_core::panic_message(&*payload)),
            &[],
            1,
        ),
    }
}

/// Makes a panic in this spawn or forkserver child name its process. The task runs
/// before `main`, where std's own hook would say `thread '<unnamed>' panicked`. Set
/// before the worker setup runs, so a program's own hook, installed there, wins.
fn name_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread
            .name()
            .map(|name| format!(", thread '{name}'"))
            .unwrap_or_default();
        let place = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let message = flotilla_core::panic_message(info.payload());
        eprintln!(
            "process '{}' (pid {}){thread} panicked{place}:\n{message}",
            flotilla_core::log::process_name(),
            std::process::id()
        );
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
    }));
}

fn refuse(boot: &Connection, reason: String) -> ! {
    eprintln!("flotilla worker {}: {reason}", std::process::id());
    finish(boot, None, &Report::Refused(reason), &[], 70)
}

/// Ends a child as Python's do: waits for its non-daemon threads, then for its own
/// non-daemonic children (terminating its daemonic ones), then sends `report`, flushes
/// standard output, and exits with `code`.
///
/// A fork child has a `page` shared with its parent: a report that fits there and
/// carries no descriptors is stored in it instead of sent, so the parent wakes up once,
/// for the exit, and finds the report already there (see `child`'s module doc).
pub(crate) fn finish(
    results: &Connection,
    page: Option<&sys::ReportPage>,
    report: &Report,
    fds: &[OwnedFd],
    code: i32,
) -> ! {
    // A process with one thread has no other thread to wait for; and only then may it
    // skip flotilla-thread's registry lock, which in a child forked from a process with
    // other threads (`start_unchecked`) one of them may have held.
    if sys::thread_count().map_or(true, |n| n > 1) {
        flotilla_thread::join_non_daemon();
    }
    crate::process::join_children();
    // Into the page when it fits there and carries no descriptors; else on the channel.
    let stored = fds.is_empty()
        && page.is_some_and(|page| {
            page.write_with(|area| {
                let capacity = area.len();
                let mut rest = area;
                codec::encode_to(&mut rest, report).ok()?;
                Some(capacity - rest.len())
            })
        });
    if !stored && let Ok(bytes) = codec::encode(report) {
        // A parent that stopped listening just misses the report.
        let _ = results.send_frame(&bytes, fds);
    }
    if FLUSH_STDOUT.load(Ordering::Relaxed) {
        let _ = std::io::stdout().flush();
    }
    sys::exit_now(code)
}

/// Whether [`finish`] flushes stdout: not in a child forked from a process that ran
/// other threads (`start_unchecked`), where one of them may have held stdout's lock at
/// the fork — a lock nobody in the child would ever release.
static FLUSH_STDOUT: AtomicBool = AtomicBool::new(true);

/// Called in a forked child, before anything else: see [`FLUSH_STDOUT`].
#[inline]
pub(crate) fn set_flush_stdout(flush: bool) {
    // Written only when it changes: in a fork child, a write copies the page.
    if FLUSH_STDOUT.load(Ordering::Relaxed) != flush {
        FLUSH_STDOUT.store(flush, Ordering::Relaxed);
    }
}

/// Runs `target` in a child (after fork, or from a trampoline) and ends the process the
/// way every child ends; `page` as for [`finish`].
pub(crate) fn run_and_report<R, F>(
    results: &Connection,
    page: Option<&sys::ReportPage>,
    target: F,
) -> !
where
    F: FnOnce() -> R,
    R: Serialize,
{
    let run = || {
        let _span = flotilla_core::log::process_span().entered();
        target()
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(value) => match encode_value(&value) {
            Ok((bytes, fds)) => finish(results, page, &Report::Returned(bytes), &fds, 0),
            Err(e) => finish(
                results,
                page,
                &Report::Panicked(format!("the return value could not be encoded: {e}")),
                &[],
                1,
            ),
        },
        Err(payload) => finish(
            results,
            page,
            &Report::Panicked(flotilla_core::panic_message(&*payload)),
            &[],
            1,
        ),
    }
}

/// The bytes of a child's value, and the descriptors of its handles: encoded into the
/// buffer its parent set aside before the fork ([`reserve_report_buffer`]) when there is
/// one, so that a fork child with a small value allocates nothing. A first allocation in
/// a fork child copies the allocator's pages: about five page faults, a good part of
/// what a fork start costs beyond the bare fork.
fn encode_value<R: Serialize>(
    value: &R,
) -> Result<(Vec<u8>, Vec<OwnedFd>), flotilla_core::codec::CodecError> {
    let mut bytes = REPORT_BUFFER.with(std::cell::Cell::take);
    bytes.clear();
    let fds = handle::encode_into(&mut bytes, value)?;
    Ok((bytes, fds))
}

/// The room [`reserve_report_buffer`] sets aside: a value this small fits the report
/// page, too.
const REPORT_BUFFER_SIZE: usize = 512;

thread_local! {
    /// See [`encode_value`]. Empty but for its capacity, in the parent.
    static REPORT_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Just before a fork, on the forking thread: makes sure the child finds a buffer for
/// its value (see [`encode_value`]). Allocates only the first time.
pub(crate) fn reserve_report_buffer() {
    REPORT_BUFFER.with(|buffer| {
        let mut bytes = buffer.take();
        if bytes.capacity() < REPORT_BUFFER_SIZE {
            bytes.reserve_exact(REPORT_BUFFER_SIZE);
        }
        buffer.set(bytes);
    });
}

/// The entry at `offset` from [`entry_base`].
///
/// # Safety
///
/// `offset` must come from [`entry_of`] or [`entry_of_chunk`] in a process running this
/// very binary (same fingerprint): then the same code sits at the same offset from
/// `entry_base`, and it is a function of type `Entry`.
pub(crate) unsafe fn entry_at(offset: usize) -> Entry {
    let address = (entry_base as *const () as usize).wrapping_add(offset);
    // SAFETY: per this function's contract, `address` is the address of an `Entry`.
    unsafe { std::mem::transmute::<usize, Entry>(address) }
}

pub(crate) use flotilla_core::build::{fn_at, offset_of_fn};

/// The function task entries are measured from.
#[inline(never)]
fn entry_base() {
    // A body that cannot be merged with another function's.
    std::hint::black_box(0xf10_7111a_u64);
}

/// How a child of this build finds a task's target.
///
/// A target is a fn item or a closure that captures nothing (a zero-sized type, which
/// the entry's own type names completely: `target` is 0), or a fn pointer `fn(A) -> R`
/// (its value is needed too: `target` is its offset from [`entry_base`], plus one). The
/// arguments travel encoded as `(target, args)`, and the entry decodes them so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskEntry {
    /// The trampoline's offset from [`entry_base`]: what [`entry_at`] turns back.
    pub(crate) offset: usize,
    pub(crate) target: u64,
}

impl TaskEntry {
    /// Encodes `args` for this entry: as `(target, args)`.
    pub(crate) fn encode_args<A: Serialize + ?Sized>(
        &self,
        args: &A,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), flotilla_ipc::Error> {
        Ok(handle::encode(&(self.target, args))?)
    }
}

/// A target's [`TaskEntry`], or why it cannot run in another process.
pub(crate) type Target = Result<TaskEntry, String>;

/// What a target that cannot run in another process is told.
const NOT_A_TARGET: &str = "a process target for spawn, forkserver or a process pool must be a \
     fn item, a fn pointer or a closure that captures nothing (it runs in another process \
     of this program, which has none of this one's data): pass data as its argument, or \
     use Process::fork to run any closure";

/// The entry for target `f` with arguments `A`.
pub(crate) fn entry_of<F, A, R>(f: &F) -> Result<TaskEntry, String>
where
    F: Fn(A) -> R + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    entry_of_target::<F, One<A>>(f)
}

/// The entry for target `f` of any [`Target`](crate::Target) shape: its arguments
/// travel as `F::Args` (a tuple when spread).
pub(crate) fn entry_of_target<F, M>(f: &F) -> Result<TaskEntry, String>
where
    F: TargetFn<M>,
    F::Args: DeserializeOwned,
    F::Output: Serialize,
{
    Ok(TaskEntry {
        offset: offset_of(trampoline::<F, M>),
        target: target_of::<F, F::Pointer>(f)?,
    })
}

/// The entry that applies target `f` to every item of a `Vec<A>` (a map chunk).
pub(crate) fn entry_of_chunk<F, A, R>(f: &F) -> Result<TaskEntry, String>
where
    F: Fn(A) -> R + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    entry_of_chunk_target::<F, One<A>>(f)
}

/// Like [`entry_of_chunk`], for any [`Target`](crate::Target) shape (a `starmap` chunk
/// of tuples spread over a function of several arguments).
pub(crate) fn entry_of_chunk_target<F, M>(f: &F) -> Result<TaskEntry, String>
where
    F: TargetFn<M>,
    F::Args: DeserializeOwned,
    F::Output: Serialize,
{
    Ok(TaskEntry {
        offset: offset_of(chunk_trampoline::<F, M>),
        target: target_of::<F, F::Pointer>(f)?,
    })
}

/// The `target` of a [`TaskEntry`] for `f`, whose fn pointer type of the same shape is
/// `P`: 0 for a zero-sized target, the fn pointer's offset plus one for a fn pointer, an
/// error for anything else.
fn target_of<F: 'static, P: 'static>(f: &F) -> Result<u64, String> {
    const {
        // A closure that captures data is refused here at build time, unless it
        // happens to be the size of a pointer (then below, at run time).
        assert!(
            size_of::<F>() == 0 || size_of::<F>() == size_of::<fn()>(),
            "a process target for spawn, forkserver or a process pool must be a fn item, a \
             fn pointer or a closure that captures nothing; pass data as its argument"
        )
    };
    if size_of::<F>() == 0 {
        return Ok(0);
    }
    if TypeId::of::<F>() != TypeId::of::<P>() {
        return Err(NOT_A_TARGET.to_owned());
    }
    // SAFETY: F is the fn pointer type P (same TypeId), which is pointer-sized: its bits
    // are the function's address.
    let pointer: usize = unsafe { std::mem::transmute_copy(f) };
    let offset = pointer.wrapping_sub(entry_base as *const () as usize);
    Ok(offset as u64 + 1)
}

/// `entry` as an offset from [`entry_base`]: what [`entry_at`] turns back into it.
fn offset_of(entry: Entry) -> usize {
    (entry as *const () as usize).wrapping_sub(entry_base as *const () as usize)
}

/// The target a [`TaskEntry`] names: the zero-sized `F` itself when `target` is 0, else
/// the fn pointer at `target - 1` from [`entry_base`].
///
/// # Safety
///
/// `target` must come from [`target_of`] for this `F` and `P`, in a process running this
/// very binary (the fingerprint matched).
unsafe fn resolve<F: 'static, P: 'static>(target: u64) -> Result<F, String> {
    if size_of::<F>() == 0 {
        // SAFETY: F is zero-sized, so reading one from any non-null, aligned pointer
        // reads no memory; and F is inhabited (the parent held a value of it to name
        // this entry), so the value read is a valid F.
        return Ok(unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() });
    }
    if TypeId::of::<F>() != TypeId::of::<P>() || target == 0 {
        return Err(NOT_A_TARGET.to_owned());
    }
    let address = (entry_base as *const () as usize).wrapping_add(target as usize - 1);
    // SAFETY: F is the fn pointer type P (same TypeId), a pointer-sized type; per this
    // function's contract `address` is where the parent's fn pointer points in this same
    // binary.
    Ok(unsafe { std::mem::transmute_copy::<usize, F>(&address) })
}

/// Decodes `(target, F::Args)`, calls the target (spreading a tuple of several
/// arguments), encodes `F::Output`.
fn trampoline<F, M>(args: &[u8], fds: Vec<OwnedFd>) -> EntryResult
where
    F: TargetFn<M>,
    F::Args: DeserializeOwned,
    F::Output: Serialize,
{
    call(args, fds, |target, args: F::Args| {
        // SAFETY: an entry runs only in a process of the parent's build (the
        // fingerprint matched), on arguments the parent encoded with this target.
        let f = unsafe { resolve::<F, F::Pointer>(target) }?;
        Ok(f.call(args))
    })
}

/// Like [`trampoline`], over a chunk: decodes `(target, Vec<F::Args>)`, encodes
/// `Vec<F::Output>`.
fn chunk_trampoline<F, M>(args: &[u8], fds: Vec<OwnedFd>) -> EntryResult
where
    F: TargetFn<M>,
    F::Args: DeserializeOwned,
    F::Output: Serialize,
{
    call(args, fds, |target, items: Vec<F::Args>| {
        // SAFETY: as in `trampoline`.
        let f = unsafe { resolve::<F, F::Pointer>(target) }?;
        Ok(items
            .into_iter()
            .map(|a| f.call(a))
            .collect::<Vec<F::Output>>())
    })
}

/// An entry's body: decodes `(target, arguments)`, calls `body` on them, encodes its
/// value.
fn call<A, R>(
    args: &[u8],
    fds: Vec<OwnedFd>,
    body: impl FnOnce(u64, A) -> Result<R, String>,
) -> EntryResult
where
    A: DeserializeOwned,
    R: Serialize,
{
    let (target, args): (u64, A) = handle::decode(args, fds)
        .map_err(|e| format!("the arguments could not be decoded: {e}"))?;
    let value = body(target, args)?;
    handle::encode(&value).map_err(|e| format!("the return value could not be encoded: {e}"))
}
/// This program's build fingerprint ([`flotilla_core::build::fingerprint`]), or the one a
/// test forced.
pub(crate) fn fingerprint() -> u64 {
    crate::testing::forced_fingerprint().unwrap_or_else(flotilla_core::build::fingerprint)
}
