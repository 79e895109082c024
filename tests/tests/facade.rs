//! Every re-export of the facade resolves, under the path a user would write, and the
//! facade's types are the sub-crates' own (not copies), so they mix freely.

#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::asyncio::{
    AsCompleted as AsyncAsCompleted, AsFuture, AsyncConnection, Cancellable, Gather, GatherAll,
    Submit, Task, as_completed as async_as_completed, default_executor, gather, run_in_executor,
    shield, to_thread, wait as async_wait, wait_for, wrap_future,
};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::futures::Completion;
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::futures::{
    AsCompleted, CancelToken, Completer, Deadline, Executor, Future, FutureId, Map, ResultFuture,
    ResultRefFuture, ReturnWhen, State, TaskError, ThreadPoolExecutor, ThreadPoolExecutorBuilder,
    Waitable, as_completed_timeout, panic_message, wait_timeout,
};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::futures::{ProcessMap, ProcessPoolExecutor, ProcessPoolExecutorBuilder, WorkerDeath};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::multiprocessing::queues::{
    DEFAULT_CAPACITY, GetError as QueueGetError, GetTimeoutError as QueueGetTimeoutError, Iter,
    PutError as QueuePutError, PutTimeoutError as QueuePutTimeoutError, QueueBuilder,
    TaskDoneError as QueueTaskDoneError, TryGetError as QueueTryGetError, TryIter,
    TryPutError as QueueTryPutError,
};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::multiprocessing::{
    AcquireError, Array, ArrayGuard, Barrier as ProcessBarrier,
    BoundedSemaphore as ProcessBoundedSemaphore, Condition as ProcessCondition,
    ConditionGuard as ProcessConditionGuard, ConditionLock, Element, Event as ProcessEvent,
    Integer, Lock, LockGuard, RLock as ProcessRLock, RLockGuard as ProcessRLockGuard,
    Semaphore as ProcessSemaphore, SemaphorePermit as ProcessSemaphorePermit, SharedMemory, Value,
    ValueGuard,
};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::multiprocessing::{
    AsyncResult, Connection, Context, Error as ProcessError, FnTarget, ForkTarget, Frame,
    FrameReader, FrameWriter, IpcError, Pool, PoolBuilder, Process, ProcessBuilder, ProcessInfo,
    StartMethod, active_children, cpu_count, current_process, get_context, get_start_method,
    handle, parent_process, pipe, set_start_method, wait as wait_connections, wait_indices,
};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::multiprocessing::{JoinableQueue, Queue as ProcessQueue, SimpleQueue};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::prelude::*;
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::queue::{
    GenericQueue, GetError, GetTimeoutError, LifoQueue, PriorityQueue, PutError, PutTimeoutError,
    Queue, Store, TaskDoneError, TryGetError, TryPutError,
};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::threading::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Error as ThreadError, Event, RLock,
    RLockGuard, Semaphore, SemaphorePermit, Thread, ThreadBuilder, spawn,
};

#[test]
fn facade_types_are_the_sub_crates_types() {
    // These only compile if the facade re-exports the sub-crates' own types.
    fn core_future(f: flotilla_core::Future<u8>) -> flotilla::futures::Future<u8> {
        f
    }
    fn core_error(e: flotilla::futures::TaskError) -> flotilla_core::TaskError {
        e
    }
    fn thread_pool(
        p: &flotilla::futures::ThreadPoolExecutor,
    ) -> &flotilla_thread::ThreadPoolExecutor {
        p
    }
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let fut = core_future(thread_pool(&pool).submit(|| 7u8).unwrap());
    assert_eq!(fut.result().map_err(core_error).unwrap(), 7);
}

#[test]
fn a_future_from_the_facade_pool_waits_with_the_facade_wait() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .build()
        .unwrap();
    let futures: Vec<Future<u32>> = (0..4)
        .map(|i| pool.submit(move || i * i).unwrap())
        .collect();
    let (done, not_done) = wait_timeout(
        &futures,
        ReturnWhen::AllCompleted,
        std::time::Duration::from_secs(30),
    );
    assert_eq!((done.len(), not_done.len()), (4, 0));
    let total: u32 = futures.iter().map(|f| f.result().unwrap()).sum();
    assert_eq!(total, 14);
    let bytes = flotilla::codec::encode(&total).unwrap();
    assert_eq!(flotilla::codec::decode::<u32>(&bytes).unwrap(), 14);
}

fn echo(conn: Connection) -> String {
    let message: String = conn.recv().unwrap();
    conn.send(&format!("echo: {message}")).unwrap();
    message
}

#[test]
fn a_connection_end_is_a_process_argument() {
    let (ours, theirs) = pipe(true).unwrap();
    let child = get_context(Some(StartMethod::ForkServer))
        .process(echo, theirs)
        .start()
        .unwrap();
    ours.send(&"hello").unwrap();
    assert_eq!(ours.recv::<String>().unwrap(), "echo: hello");
    assert_eq!(
        child
            .join_timeout(std::time::Duration::from_secs(60))
            .unwrap(),
        "hello"
    );
}

fn cube(x: u64) -> u64 {
    x * x * x
}

#[test]
fn thread_and_process_futures_wait_together() {
    let threads = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let processes = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let futures = vec![
        threads.submit(|| 8u64).unwrap(),
        processes.submit(cube, 2).unwrap(),
    ];
    let total: u64 = as_completed_timeout(futures, std::time::Duration::from_secs(60))
        .map(|f| f.unwrap().result().unwrap())
        .sum();
    assert_eq!(total, 16);
}

#[test]
fn the_asyncio_bridge_awaits_facade_pools_and_its_task_is_the_sub_crates() {
    fn sub_crate_task(t: flotilla::asyncio::Task<u64>) -> flotilla_async::Task<u64> {
        t
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let threads = ThreadPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let procs = ProcessPoolExecutor::builder()
        .max_workers(1)
        .build()
        .unwrap();
    let values = runtime.block_on(gather([
        sub_crate_task(run_in_executor(&threads, || 2u64)),
        run_in_executor(&procs, (cube, 3)),
        to_thread(|| 4u64),
    ]));
    assert_eq!(values.unwrap(), [2, 27, 4]);
}

fn meet_and_signal((barrier, done): (ProcessBarrier, ProcessEvent)) -> usize {
    let index = barrier
        .wait_timeout(std::time::Duration::from_secs(60))
        .unwrap();
    done.set();
    index
}

#[test]
fn process_shared_primitives_from_the_facade_cross_into_a_child() {
    let barrier = ProcessBarrier::new(2).unwrap();
    let done = ProcessEvent::new().unwrap();
    let child = Process::new(meet_and_signal, (barrier.clone(), done.clone()))
        .start()
        .unwrap();
    let mine = barrier
        .wait_timeout(std::time::Duration::from_secs(60))
        .unwrap();
    assert!(done.wait_timeout(std::time::Duration::from_secs(60)));
    let theirs = child
        .join_timeout(std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(mine + theirs, 1, "distinct arrival indices");
}

#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::log::{Level, log_to_stderr as log_to_stderr_in_module, set_worker_setup};
#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::log_to_stderr;

#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::pycompat::{
    Address as _, AuthError as _, AuthKey as _, CallError as _, Client as _, ConnectError as _,
    Connection as _, DEFAULT_MAX_FRAME as _, DEFAULT_TIMEOUT as _, DictProxy as _, FrameError as _,
    Listener as _, ManagerClient as _, Options as _, PickleError as _, Proxy as _, PyObject as _,
    PyValue as _, PythonException as _, QueueProxy as _, RecvError as _, SendError as _,
    UnpickleError as _, pickle as _,
};

#[allow(unused_imports, reason = "the test is that these paths resolve")]
use flotilla::managers::{
    Address, AuthError, AuthKey, CallError, Client, ConnectError, DictProxy, ListProxy, LockProxy,
    LockProxyGuard, Manager, ManagerBuilder, NamespaceProxy, ObjectRef, QueueProxy, RemoteError,
    RemoteErrorKind, Server, ServerBuilder, SharedObject, StartError, Token, connect,
};
