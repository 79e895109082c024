//! Talk to Python processes on their own terms: CPython's `multiprocessing.connection`
//! and its managers, from Rust, without ever running code from the wire.
//!
//! - [`Listener`], [`Client`], [`Connection`]: Python's `multiprocessing.connection`
//!   over Unix sockets and TCP, byte for byte: 4-byte big-endian length frames (−1 and
//!   an 8-byte length above 2 GiB), the mutual HMAC authkey handshake (CPython 3.12+'s
//!   `{sha256}` form; the raw HMAC-MD5 form of 3.11 and older only with
//!   [`Options::legacy_md5`]), pickled messages ([`Connection::send`] /
//!   [`Connection::recv`] for serde values) and raw ones ([`Connection::send_bytes`] /
//!   [`Connection::recv_bytes`]). Frames over [`Options::max_frame`] are refused before
//!   anything is allocated; every blocking call has a timeout.
//! - [`ManagerClient`], [`Proxy`], [`QueueProxy`], [`DictProxy`]: a client of a Python
//!   `BaseManager` / `SyncManager` server: create a registered typeid, call its methods,
//!   release it when the proxy drops. A Python exception arrives as
//!   [`CallError::Exception`] with its class and arguments.
//! - [`pickle`]: the pickle reader behind both. It accepts plain data (any protocol)
//!   and a short allow-list of classes (the manager's `Token`, the builtin exceptions,
//!   `queue.Empty`/`Full`), records them without calling anything, and refuses every
//!   other global with [`UnpickleError::Refused`].
//!
//! The framing and the handshake are flotilla-manager's ([`flotilla_manager::wire`],
//! [`flotilla_manager::auth`]); flotilla's own manager never speaks pickle.
//!
//! ```
//! use flotilla_pycompat::{Client, Listener, Options};
//!
//! let options = Options::new().authkey(b"secret");
//! let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap(), options.clone()).unwrap();
//! let address = listener.address().clone();
//! let peer = std::thread::spawn(move || {
//!     let mut conn = Client::new(options).connect(&address).unwrap();
//!     conn.send(&("hello", 42)).unwrap();
//!     conn.recv::<String>().unwrap()
//! });
//! let mut conn = listener.accept().unwrap();
//! let (word, n): (String, i64) = conn.recv().unwrap();
//! conn.send(&format!("{word} {n}")).unwrap();
//! assert_eq!(peer.join().unwrap(), "hello 42");
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!("flotilla-pycompat supports Linux only, as flotilla-manager does.");

mod connection;
mod manager;
pub mod pickle;

pub use crate::connection::{
    Client, ConnectError, Connection, DEFAULT_MAX_FRAME, DEFAULT_TIMEOUT, Listener, Options,
    RecvError, SendError,
};
pub use crate::manager::{CallError, DictProxy, ManagerClient, Proxy, PythonException, QueueProxy};
pub use crate::pickle::{PickleError, PyObject, PyValue, UnpickleError};
pub use flotilla_manager::{Address, AuthError, AuthKey, FrameError};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync + 'static>() {}

    /// Errors go into `Box<dyn Error + Send + Sync>`; connections and proxies move
    /// between threads, and a proxy is shared by them.
    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<ConnectError>();
        send_sync::<SendError>();
        send_sync::<RecvError>();
        send_sync::<CallError>();
        send_sync::<UnpickleError>();
        send_sync::<PickleError>();
        send_sync::<Connection>();
        send_sync::<Listener>();
        send_sync::<ManagerClient>();
        send_sync::<Proxy>();
        send_sync::<QueueProxy>();
        send_sync::<DictProxy>();
        send_sync::<PyValue>();
    }
}
