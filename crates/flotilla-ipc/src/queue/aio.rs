//! The queues' `async` operations: `put_async`, `get_async` and `join_async`, which
//! never block their thread while they wait, in any runtime (they are plain
//! `std::future::Future`s, woken through this crate's futex reactor).
//!
//! Each is a loop of a non-blocking try and an await of the word that try's failure
//! waits on (data, room, or `task_done`), made *before* the try, so a change between
//! the try and the await is not missed (see `readiness.rs`). The first try is made
//! before any such future: an operation that need not wait touches no shared word but
//! the ring's, and does not make the other side's commits wake it.
//!
//! Two cases still use a thread, by necessity rather than convenience: an item too long
//! to fit in the ring at once must be streamed, which holds the producers' lock (a
//! thread-owned robust mutex) while consumers read, so `put_async` hands such an item
//! to a short-lived thread of its own; and `get_async` that has begun reading such an
//! item reads it to its end, blocking its thread for as long as the producer takes to
//! copy the rest in.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use flotilla_core::{Completer, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::QueueError;
use super::ring::{self, Refused};
use super::{GetError, JoinableQueue, PutError, Queue, SimpleQueue, with_scratch};

/// What one non-blocking put did.
enum Step<T> {
    Done,
    /// No room now: wait for some.
    Busy(T),
    /// The item can never fit in the ring at once: it must be streamed.
    Stream(T),
    Refused(PutError<T>),
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Queue<T> {
    /// Puts `item` at the back of the queue, waiting for room without blocking the
    /// thread: the `async` form of [`put`](Self::put), for any runtime.
    ///
    /// When it returns `Ok`, the item is in shared memory, as with `put`. Dropping the
    /// future before that puts nothing (unless the item was handed to a thread to be
    /// streamed, see below: then it is put anyway).
    ///
    /// An item longer than the ring is streamed through it while consumers read, which
    /// needs a thread: the future hands such an item to a thread of its own and awaits
    /// it.
    ///
    /// # Errors
    ///
    /// As for [`put`](Self::put).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::bounded(1).unwrap();
    /// q.put_async("first".to_string()).await.unwrap();
    /// let (put, got) = tokio::join!(q.put_async("second".to_string()), async {
    ///     // The queue is full: the put above waits for this get, on the same thread.
    ///     q.get_async().await.unwrap()
    /// });
    /// put.unwrap();
    /// assert_eq!(got, "first");
    /// assert_eq!(q.get_async().await.unwrap(), "second");
    /// # }
    /// ```
    pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
        let mut item = item;
        let mut room = None;
        loop {
            match self.put_step(item) {
                Step::Done => return Ok(()),
                Step::Busy(back) => item = back,
                Step::Stream(back) => return self.put_streamed(back).await,
                Step::Refused(e) => return Err(e),
            }
            // Made before the try that just failed, so no room freed since is missed.
            if let Some(room) = room.take() {
                room.await;
            }
            room = Some(self.ring.space_changed());
        }
    }

    /// One non-blocking put: encodes `item` and puts it if there is room now.
    fn put_step(&self, item: T) -> Step<T> {
        with_scratch(|buf| {
            if let Err(e) = codec::encode_into(buf, &item) {
                return Step::Refused(PutError::Failed(item, QueueError::Encode(e)));
            }
            if !self.ring.fits_whole(buf.len() as u64)
                && (buf.len() as u64) <= self.ring.max_message()
            {
                return Step::Stream(item);
            }
            match self.ring.put(buf, ring::now()) {
                Ok(()) => Step::Done,
                Err(Refused::Busy) => Step::Busy(item),
                Err(Refused::Closed) => Step::Refused(PutError::Closed(item)),
                Err(Refused::Failed(e)) => Step::Refused(PutError::Failed(item, e)),
            }
        })
    }

    /// Puts an item longer than the ring from a thread of its own, awaiting it.
    async fn put_streamed(&self, item: T) -> Result<(), PutError<T>> {
        // Shared with the thread, so that a thread that cannot start hands the item back.
        let slot = Arc::new(Mutex::new(Some(item)));
        let (completer, done) = Completer::new();
        let (queue, theirs) = (self.clone(), Arc::clone(&slot));
        let started = std::thread::Builder::new()
            .name("flotilla-queue-put".into())
            .spawn(move || {
                let item = theirs.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(item) = item {
                    completer.set_result(catch_unwind(AssertUnwindSafe(|| queue.put(item))));
                }
            });
        if let Err(e) = started {
            let item = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            let error = QueueError::Os {
                op: "starting a thread to stream a long item",
                source: e,
            };
            return match item {
                Some(item) => Err(PutError::Failed(item, error)),
                None => unreachable!("the thread that takes the item never started"),
            };
        }
        match done.await {
            Ok(Ok(outcome)) => outcome,
            // `put` panicked on that thread: a bug, surfaced where the put was asked for.
            Ok(Err(payload)) => resume_unwind(payload),
            Err(e) => unreachable!("the streaming thread always completes its future: {e}"),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the item at the front of the queue, waiting for one without blocking the
    /// thread: the `async` form of [`get`](Self::get), for any runtime. Dropping the
    /// future before it completes takes nothing.
    ///
    /// An item longer than the ring, once its first piece is read, is read to its end
    /// on this thread while its producer copies the rest in.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use flotilla_ipc::Queue;
    ///
    /// let q = Queue::new().unwrap();
    /// let producer = {
    ///     let q = q.clone();
    ///     std::thread::spawn(move || q.put(42u32).unwrap())
    /// };
    /// assert_eq!(q.get_async().await.unwrap(), 42);
    /// producer.join().unwrap();
    /// # }
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        let mut data = None;
        loop {
            match self.get_by(ring::now()) {
                Ok(item) => return Ok(item),
                Err(Refused::Busy) => {}
                Err(Refused::Closed) => return Err(GetError::Closed),
                Err(Refused::Failed(e)) => return Err(GetError::Failed(e)),
            }
            // As in `put_async`.
            if let Some(data) = data.take() {
                data.await;
            }
            data = Some(self.ring.data_changed());
        }
    }
}

impl<T> JoinableQueue<T> {
    /// Waits until every item put has been marked done, without blocking the thread:
    /// the `async` form of [`join`](Self::join), for any runtime. Bound it with the
    /// runtime's timeout (a consumer that died holding an item never marks it done).
    ///
    /// # Errors
    ///
    /// None today; the `Result` matches [`join`](Self::join).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use flotilla_ipc::JoinableQueue;
    ///
    /// let q = JoinableQueue::new().unwrap();
    /// q.put(1u8).unwrap();
    /// let worker = {
    ///     let q = q.clone();
    ///     std::thread::spawn(move || {
    ///         q.get().unwrap();
    ///         q.task_done().unwrap();
    ///     })
    /// };
    /// q.join_async().await.unwrap();
    /// assert_eq!(q.unfinished_tasks(), 0);
    /// worker.join().unwrap();
    /// # }
    /// ```
    pub async fn join_async(&self) -> Result<(), QueueError> {
        let mut done = None;
        loop {
            if self.0.ring.unfinished() == 0 {
                return Ok(());
            }
            // As in `put_async`.
            if let Some(done) = done.take() {
                done.await;
            }
            done = Some(self.0.ring.tasks_changed());
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SimpleQueue<T> {
    /// [`Queue::put_async`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::put`].
    pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
        self.0.put_async(item).await
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// [`Queue::get_async`].
    ///
    /// # Errors
    ///
    /// As for [`Queue::get`].
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.0.get_async().await
    }
}
