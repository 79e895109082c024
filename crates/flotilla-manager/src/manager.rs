//! [`Manager`]: Python's `SyncManager` — a server started in a child process, listening on
//! a Unix socket in a private temporary directory, shut down when the manager is dropped.

use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use flotilla_ipc::{Connection, pipe};
use flotilla_process::{Context, Process, get_context};

use crate::auth::AuthKey;
use crate::client::{Client, ConnectError};
use crate::server::{DEFAULT_FRAME_TIMEOUT, Server};
use crate::wire::Address;

/// Why a manager could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The temporary directory, or the randomness for the authkey, was refused.
    #[error("could not prepare the manager: {0}")]
    Io(#[from] std::io::Error),
    /// The server process could not be started or set up.
    #[error("could not start the manager's server process: {0}")]
    Process(String),
    /// The server started but we could not connect to it.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Options for a [`Manager`]: its start method, authkey and timeouts.
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    context: Option<Context>,
    authkey: Option<AuthKey>,
    start_timeout: Duration,
    shutdown_timeout: Duration,
}

impl ManagerBuilder {
    /// The start method's context for the server process (default: the program's, so
    /// forkserver unless changed).
    pub fn context(mut self, context: Context) -> Self {
        self.context = Some(context);
        self
    }

    /// The authkey clients must hold (default: 32 random bytes).
    pub fn authkey(mut self, key: AuthKey) -> Self {
        self.authkey = Some(key);
        self
    }

    /// How long to wait for the server to be ready (default 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// How long [`Manager::shutdown`] and drop wait for the server to exit before
    /// killing it (default 5 s; Python's `shutdown_timeout` is 1 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Starts the server process and connects to it.
    pub fn start(self) -> Result<Manager, StartError> {
        let authkey = match self.authkey {
            Some(k) => k,
            None => AuthKey::random()
                .map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?,
        };
        let dir = private_dir()?;
        let address = Address::Unix(dir.join("manager.sock"));
        let (ours, theirs) = pipe(false).map_err(|e| StartError::Process(e.to_string()))?;
        let context = self.context.unwrap_or_else(|| get_context(None));
        let args = ServerArgs {
            address: address.clone(),
            authkey: authkey.clone(),
            ready: theirs,
        };
        let process = context
            .process(run_server, args)
            .name("SyncManager")
            .daemon(true)
            .start()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                StartError::Process(e.to_string())
            })?;
        let mut manager = Manager {
            client: None,
            shut: false,
            process: Some(process),
            address,
            authkey,
            dir,
            shutdown_timeout: self.shutdown_timeout,
        };
        match ours.recv_timeout::<Result<(), String>>(self.start_timeout) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(StartError::Process(why)),
            Err(e) => {
                return Err(StartError::Process(format!(
                    "the server did not report ready: {e}"
                )));
            }
        }
        manager.client = Some(Client::connect_with(
            &manager.address,
            Some(&manager.authkey),
            DEFAULT_FRAME_TIMEOUT,
        )?);
        Ok(manager)
    }
}

/// A new directory only this user can enter, for the server's socket.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = format!(
        "flotilla-manager-{}-{:016x}",
        std::process::id(),
        u64::from_ne_bytes(random)
    );
    let dir = std::env::temp_dir().join(name);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

#[derive(Serialize, Deserialize)]
struct ServerArgs {
    address: Address,
    authkey: AuthKey,
    ready: Connection,
}

/// The server process's body.
fn run_server(args: ServerArgs) {
    // SIGINT is for the user's program, not its manager (Python: bpo-36368); the
    // manager stops when its owner shuts it down or dies.
    // SAFETY: setting a signal to be ignored installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let server = Server::builder(args.address).authkey(args.authkey).bind();
    match server {
        Ok(server) => {
            let _ = args.ready.send(&Ok::<(), String>(()));
            drop(args.ready);
            server.serve_forever();
        }
        Err(e) => {
            let _ = args.ready.send(&Err::<(), String>(e.to_string()));
        }
    }
}

/// A manager: a server process owning shared objects, and this process's connection to
/// it. Python's `multiprocessing.Manager()` / `SyncManager`.
///
/// It derefs to its [`Client`], so `manager.dict()`, `manager.lock()`, ... make objects
/// directly. Dropping it shuts the server down (a shutdown request, then a wait of
/// `shutdown_timeout`, then `SIGKILL`); every proxy left fails from then on with
/// [`CallError::ManagerGone`](crate::CallError::ManagerGone), at once.
///
/// The server process is daemonic: it dies with this process, even when this process is
/// killed, so a manager never outlives its owner. Under the spawn start method the
/// kernel ties that to the *thread* that started it (see
/// [`ProcessBuilder::daemon`](flotilla_process::ProcessBuilder::daemon)): start a manager
/// from a thread that lives as long as it should (the default forkserver has no such
/// limit).
///
/// ```
/// use flotilla_manager::Manager;
///
/// let manager = Manager::start().unwrap();
/// let d = manager.dict::<u32, String>().unwrap();
/// d.set(&1, &"one".into()).unwrap();
/// assert_eq!(d.get(&1).unwrap().as_deref(), Some("one"));
/// drop(manager);
/// assert!(d.get(&1).unwrap_err().is_manager_gone());
/// ```
#[derive(Debug)]
pub struct Manager {
    /// `None` only while starting.
    client: Option<Client>,
    shut: bool,
    process: Option<Process<()>>,
    address: Address,
    authkey: AuthKey,
    dir: PathBuf,
    shutdown_timeout: Duration,
}

impl Manager {
    /// Starts a manager with the default options.
    pub fn start() -> Result<Manager, StartError> {
        Manager::builder().start()
    }

    /// Options for a manager.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            context: None,
            authkey: None,
            start_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// The server's address (a Unix socket path).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The authkey clients need.
    pub fn authkey(&self) -> &AuthKey {
        &self.authkey
    }

    /// This process's connection to the server.
    pub fn client(&self) -> &Client {
        // Set before `start` returns the manager.
        self.client
            .as_ref()
            .expect("a started manager has a client")
    }

    /// The server process's id.
    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Shuts the server down: asks it to stop (it answers the calls in flight first),
    /// waits up to the shutdown timeout, then kills it. Idempotent.
    pub fn shutdown(&mut self) {
        if self.shut {
            return;
        }
        self.shut = true;
        // The client stays: once the server is gone its calls fail with ManagerGone.
        if let Some(client) = &self.client
            && let Err(e) = client.shutdown_server_timeout(self.shutdown_timeout)
        {
            flotilla_core::event!(flotilla_core::log::Level::DEBUG, error = %e, "manager: shutdown request failed (already gone?)");
        }
        if let Some(process) = self.process.take()
            && process.join_timeout(self.shutdown_timeout).is_err()
            && process.is_alive()
        {
            flotilla_core::event!(
                flotilla_core::log::Level::WARN,
                pid = process.pid(),
                "manager: server did not stop in time; killing it"
            );
            let _ = process.kill();
            let _ = process.join_timeout(Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Deref for Manager {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
