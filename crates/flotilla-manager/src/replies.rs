//! The reading half of a client connection: who reads the replies, and how each reaches
//! the call waiting for it.
//!
//! No thread is set aside to read. A thread waiting for its reply reads the connection
//! itself when nobody else is (it *leads*), handing the replies of other calls to their
//! slots as they come, until its own arrives; then it passes the reading role to a thread
//! waiting behind it (a *follower*), if there is one. So a call made alone costs one write
//! and one read, as a raw round trip does, with no thread woken in between; with several
//! threads calling at once, each reply wakes at most the one thread it is for.
//!
//! One background thread reads for those that cannot: calls awaited by async tasks (a
//! poll never blocks) and waits with a timeout. It also watches calls sent and not waited
//! for (pipelined): their replies come with nobody reading, and if they filled the socket
//! while we still write requests, each side would wait for the other. So while calls are
//! in flight it looks every [`STALL`]: when nobody has read a reply since its last look and
//! nobody reads now, it reads them in. It sleeps otherwise, and a lone call never wakes it.
//!
//! Lock order: `reader` (held only by the thread with the reading role), then `state`, then
//! a slot's own mutex; nobody takes `reader` while holding `state`.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use flotilla_core::codec;

use crate::client::CallError;
use crate::protocol::Response;
use crate::server::lock;
use crate::wire::{self, Address, DEFAULT_MAX_FRAME, FrameError, Idle, Stream};

/// A call's reply, once it came.
pub(crate) type Answer = Result<Vec<u8>, CallError>;

/// How often the background thread looks at calls in flight with nobody reading them.
const STALL: Duration = Duration::from_millis(5);

#[derive(Debug, Default)]
struct SlotState {
    answer: Option<Answer>,
    waker: Option<Waker>,
    /// A thread sleeps on the condvar.
    sleeping: bool,
    /// That thread is a follower, waiting for its reply or for the reading role.
    following: bool,
    /// The reading role was handed to it.
    promoted: bool,
}

/// A one-shot slot for one call's reply: filled once by whoever reads it (or with
/// [`CallError::ManagerGone`] when the connection ends), taken by the thread waiting on it
/// or the task polling it.
#[derive(Debug)]
pub(crate) struct SlotCell {
    id: u64,
    state: Mutex<SlotState>,
    cv: Condvar,
}

pub(crate) type Slot = Arc<SlotCell>;

impl SlotCell {
    fn fill(&self, answer: Answer) {
        let (sleeping, waker) = {
            let mut g = lock(&self.state);
            if g.answer.is_none() {
                g.answer = Some(answer);
            }
            (g.sleeping, g.waker.take())
        };
        // No wake-up call (a syscall) for a slot nobody sleeps on.
        if sleeping {
            self.cv.notify_one();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn take(&self) -> Option<Answer> {
        lock(&self.state).answer.take()
    }

    fn is_following(&self) -> bool {
        lock(&self.state).following
    }

    /// Hands the reading role to this slot's follower; false when it no longer follows.
    fn promote(&self) -> bool {
        let mut g = lock(&self.state);
        if !g.following || g.answer.is_some() {
            return false;
        }
        g.promoted = true;
        if g.sleeping {
            self.cv.notify_one();
        }
        true
    }

    /// Sleeps until the answer comes or the role is handed over (then `None`), or until
    /// `deadline` passes (then `None` too).
    fn sleep(&self, deadline: flotilla_core::Deadline) -> Option<Answer> {
        let mut g = lock(&self.state);
        g.sleeping = true;
        while g.answer.is_none() && !g.promoted && !deadline.expired() {
            g = deadline.wait(&self.cv, g);
        }
        g.sleeping = false;
        g.following = false;
        g.promoted = false;
        g.answer.take()
    }
}

#[derive(Debug, Default)]
struct State {
    /// Calls waiting for their reply, by request id.
    pending: HashMap<u64, Slot>,
    /// Why the connection died; then every call fails at once.
    dead: Option<String>,
    /// Someone holds the reading role.
    reading: bool,
    /// Threads waiting for their reply while another reads.
    followers: Vec<Slot>,
    /// Calls whose waiter does not read for itself (async, timed).
    background: HashSet<u64>,
    /// The client is gone: the background thread ends.
    closed: bool,
    /// Replies delivered so far (for the background thread to see progress).
    delivered: u64,
    /// The background thread looks at calls in flight every [`STALL`].
    watching: bool,
}

impl State {
    fn background_wanted(&self) -> bool {
        !self.background.is_empty()
    }

    /// Takes the slot of reply `id` out of every list.
    fn route(&mut self, id: u64) -> Option<Slot> {
        let slot = self.pending.remove(&id)?;
        self.delivered += 1;
        self.background.remove(&id);
        if slot.is_following() {
            self.followers.retain(|f| !Arc::ptr_eq(f, &slot));
        }
        Some(slot)
    }

    /// Gives up the reading role: to a follower if there is one; else wakes the background
    /// thread if it is wanted (`wake_background`).
    fn hand_over(&mut self, background: &Condvar, wake_background: bool) {
        self.reading = false;
        while let Some(f) = self.followers.pop() {
            if f.promote() {
                return;
            }
        }
        if wake_background {
            self.wake_background(background);
        }
    }

    /// Wakes the background thread when it has something to do: a call only it reads
    /// for, or calls in flight to watch (then once, until none is left).
    fn wake_background(&mut self, background: &Condvar) {
        if self.background_wanted() || (!self.pending.is_empty() && !self.watching) {
            self.watching = true;
            background.notify_one();
        }
    }
}

/// One connection's two halves, shared by the client's handles and its background thread:
/// the requests written and the replies read.
#[derive(Debug)]
pub(crate) struct Replies {
    /// Requests are written here, under this lock, by the calling threads themselves.
    writer: Mutex<BufWriter<Stream>>,
    /// The writer holds requests not sent yet (pipelined calls wait there for the next
    /// flush). Changed under the writer's lock.
    unflushed: AtomicBool,
    state: Mutex<State>,
    reader: Mutex<BufReader<Stream>>,
    background: Condvar,
    address: Address,
    frame_timeout: Duration,
}

impl Replies {
    pub(crate) fn new(
        reader: Stream,
        writer: Stream,
        address: Address,
        frame_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Replies {
            writer: Mutex::new(BufWriter::with_capacity(16 * 1024, writer)),
            unflushed: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            reader: Mutex::new(BufReader::with_capacity(64 * 1024, reader)),
            background: Condvar::new(),
            address,
            frame_timeout,
        })
    }

    fn gone(why: &str) -> CallError {
        CallError::ManagerGone(why.to_owned())
    }

    /// A slot for the reply to request `id`, before the request is written.
    pub(crate) fn register(&self, id: u64) -> Result<Slot, CallError> {
        let slot = Arc::new(SlotCell {
            id,
            state: Mutex::default(),
            cv: Condvar::new(),
        });
        let mut st = lock(&self.state);
        if let Some(why) = &st.dead {
            return Err(Self::gone(why));
        }
        st.pending.insert(id, Arc::clone(&slot));
        // Two in flight with nobody reading: a pipeline, which the background thread
        // watches. (A lone call is read by its caller: no wake-up.)
        if st.pending.len() >= 2 && !st.reading {
            st.wake_background(&self.background);
        }
        Ok(slot)
    }

    /// Writes one request frame: sent now (`now`), or left in the buffer (a pipelined
    /// call), to go with the next call sent now, when a call is waited for, awaited or
    /// dropped, when the buffer fills, or when the background thread finds it there twice
    /// in a row ([`STALL`] apart).
    pub(crate) fn write(&self, frame: &[u8], now: bool) -> Result<(), CallError> {
        let written = {
            let mut w = lock(&self.writer);
            wire::write_frame_unflushed(&mut *w, frame).and_then(|()| {
                self.unflushed.store(!now, Ordering::Relaxed);
                if now { w.flush() } else { Ok(()) }
            })
        };
        if let Err(e) = written {
            return Err(self.write_failed(&e));
        }
        if !now {
            let mut st = lock(&self.state);
            if st.reading {
                // Whoever reads is waiting for something else: it would not send this.
                drop(st);
                return self.flush();
            }
            st.wake_background(&self.background);
        }
        Ok(())
    }

    /// Sends the requests left in the buffer, if any.
    pub(crate) fn flush(&self) -> Result<(), CallError> {
        if !self.unflushed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let flushed = {
            let mut w = lock(&self.writer);
            self.unflushed.store(false, Ordering::Relaxed);
            w.flush()
        };
        flushed.map_err(|e| self.write_failed(&e))
    }

    fn write_failed(&self, e: &std::io::Error) -> CallError {
        let why = format!("the connection to {} failed: {e}", self.address);
        self.fail(why.clone());
        CallError::ManagerGone(why)
    }

    /// Fails every waiting call, and all later ones, with `why`.
    pub(crate) fn fail(&self, why: String) {
        let pending = {
            let mut st = lock(&self.state);
            if st.dead.is_none() {
                st.dead = Some(why.clone());
            }
            st.followers.clear();
            st.background.clear();
            std::mem::take(&mut st.pending)
        };
        self.background.notify_one();
        for (_, slot) in pending {
            slot.fill(Err(Self::gone(&why)));
        }
    }

    /// The client's last handle is gone: the background thread ends.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.background.notify_one();
    }

    /// Whether the connection is known to be dead: a reader saw it end, or, with nobody
    /// reading, the peer has closed it (a look at the socket, without reading).
    pub(crate) fn is_gone(&self, stream: &Stream) -> bool {
        let st = lock(&self.state);
        if st.dead.is_some() {
            return true;
        }
        if st.reading || stream.peek_now() != Some(false) {
            return false;
        }
        drop(st);
        self.fail(format!(
            "the manager closed the connection ({})",
            self.address
        ));
        true
    }

    /// Reads one reply; why not, when the connection is done for.
    fn read_one(&self, reader: &mut BufReader<Stream>) -> Result<Response, String> {
        reader.get_ref().poll_briefly(reader.buffer());
        let frame = wire::read_frame(reader, DEFAULT_MAX_FRAME, Idle::Forever, self.frame_timeout)
            .map_err(|e| match e {
                FrameError::Closed => {
                    format!("the manager closed the connection ({})", self.address)
                }
                e => format!("the connection to {} failed: {e}", self.address),
            })?;
        codec::decode(&frame).map_err(|e| {
            format!(
                "the manager at {} sent a malformed reply: {e}",
                self.address
            )
        })
    }

    /// Reads the next reply and takes its slot out of the lists, returning the state's
    /// lock still held (the reader decides under it whether to go on reading); why not,
    /// when the connection is done for.
    fn next_reply(
        &self,
        reader: &mut BufReader<Stream>,
    ) -> Result<(Response, Option<Slot>, std::sync::MutexGuard<'_, State>), String> {
        let response = self.read_one(reader)?;
        let mut st = lock(&self.state);
        let routed = st.route(response.id);
        Ok((response, routed, st))
    }

    fn deliver(slot: Option<Slot>, response: Response) {
        match slot {
            Some(slot) => slot.fill(response.result.map_err(CallError::Remote)),
            None => flotilla_core::event!(
                flotilla_core::log::Level::WARN,
                id = response.id,
                "manager client: a reply nobody asked for"
            ),
        }
    }

    fn ended(&self, why: String) {
        flotilla_core::event!(flotilla_core::log::Level::DEBUG, address = %self.address, why, "manager client: connection ended");
        self.fail(why);
    }

    /// Waits for `slot`'s reply, reading the connection itself when nobody else is.
    pub(crate) fn wait(&self, slot: &Slot) -> Answer {
        self.flush()?;
        loop {
            let mut st = lock(&self.state);
            if let Some(answer) = slot.take() {
                return answer;
            }
            if let Some(why) = &st.dead {
                return Err(Self::gone(why));
            }
            if !st.reading {
                st.reading = true;
                drop(st);
                return self.lead(slot);
            }
            lock(&slot.state).following = true;
            st.followers.push(Arc::clone(slot));
            drop(st);
            if let Some(answer) = slot.sleep(flotilla_core::Deadline::after(None)) {
                return answer;
            }
            // Promoted: take the role (unless a newcomer took it first).
        }
    }

    /// Holding the reading role: reads until `slot`'s reply comes, delivering the others.
    fn lead(&self, slot: &Slot) -> Answer {
        let mut reader = lock(&self.reader);
        loop {
            let (response, routed, mut st) = match self.next_reply(&mut reader) {
                Ok(next) => next,
                Err(why) => {
                    drop(reader);
                    self.ended(why.clone());
                    lock(&self.state).reading = false;
                    return slot.take().unwrap_or_else(|| Err(Self::gone(&why)));
                }
            };
            if response.id == slot.id {
                drop(reader);
                st.hand_over(&self.background, true);
                return response.result.map_err(CallError::Remote);
            }
            drop(st);
            Self::deliver(routed, response);
        }
    }

    /// Waits up to `timeout` for `slot`'s reply, leaving the reading to others (the
    /// background thread when nobody else reads).
    pub(crate) fn wait_timeout(&self, slot: &Slot, timeout: Duration) -> Option<Answer> {
        if let Err(e) = self.flush() {
            return Some(Err(e));
        }
        {
            let mut st = lock(&self.state);
            if let Some(answer) = slot.take() {
                return Some(answer);
            }
            if let Some(why) = &st.dead {
                return Some(Err(Self::gone(why)));
            }
            if st.pending.contains_key(&slot.id) {
                st.background.insert(slot.id);
                if !st.reading {
                    st.wake_background(&self.background);
                }
            }
        }
        slot.sleep(flotilla_core::Deadline::after(Some(timeout)))
    }

    /// Polls `slot` from an async task: ready with the reply, else the task is woken when
    /// it comes (read by a waiting thread or the background thread).
    pub(crate) fn poll(&self, slot: &Slot, cx: &mut Context<'_>) -> Poll<Answer> {
        if let Err(e) = self.flush() {
            return Poll::Ready(Err(e));
        }
        {
            let mut g = lock(&slot.state);
            if let Some(answer) = g.answer.take() {
                return Poll::Ready(answer);
            }
            g.waker = Some(cx.waker().clone());
        }
        let mut st = lock(&self.state);
        if st.pending.contains_key(&slot.id) && st.background.insert(slot.id) && !st.reading {
            st.wake_background(&self.background);
        }
        // Answered or failed since: the filler wakes the waker just set.
        Poll::Pending
    }

    /// The background thread: reads for async and timed waits when nobody else reads, and
    /// for calls in flight that nobody has read for a whole [`STALL`].
    pub(crate) fn background(&self) {
        // What was delivered at the last look, if nobody was reading then.
        let mut stalled_at: Option<u64> = None;
        // Requests were left unsent at the last look.
        let mut unsent = false;
        let mut st = lock(&self.state);
        loop {
            if !st.watching {
                unsent = false;
            } else if self.unflushed.load(Ordering::Relaxed) {
                if unsent {
                    drop(st);
                    // A failure fails every call, and ends this loop below.
                    let _ = self.flush();
                    st = lock(&self.state);
                }
                unsent = true;
            } else {
                unsent = false;
            }
            if st.closed || st.dead.is_some() {
                return;
            }
            let stalled = !st.reading && stalled_at == Some(st.delivered);
            if !st.reading && (st.background_wanted() || (stalled && !st.pending.is_empty())) {
                st.reading = true;
                drop(st);
                // What it reads for may still be in the buffer; and while it reads, calls
                // written are sent at once (see `write`).
                if self.flush().is_err() || !self.read_for_others() {
                    return;
                }
                stalled_at = None;
                st = lock(&self.state);
                continue;
            }
            if st.pending.is_empty() {
                st.watching = false;
                stalled_at = None;
                st = self
                    .background
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            } else {
                st.watching = true;
                stalled_at = (!st.reading).then_some(st.delivered);
                st = self
                    .background
                    .wait_timeout(st, STALL)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
    }

    /// Holding the reading role for others: reads until a follower can take over or no
    /// call is left in flight; false when the connection ended.
    fn read_for_others(&self) -> bool {
        let mut reader = lock(&self.reader);
        loop {
            let (response, routed, mut st) = match self.next_reply(&mut reader) {
                Ok(next) => next,
                Err(why) => {
                    drop(reader);
                    self.ended(why);
                    return false;
                }
            };
            // A follower reads for itself from here; so does everyone once nothing is
            // left in flight.
            let done = !st.followers.is_empty() || st.pending.is_empty();
            if done {
                st.hand_over(&self.background, false);
            }
            drop(st);
            Self::deliver(routed, response);
            if done {
                return true;
            }
        }
    }
}
