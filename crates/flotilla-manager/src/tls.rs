//! Optional TLS on TCP connections (the `tls` feature): rustls with its `ring` provider.
//!
//! CPython's managers have no TLS; flotilla adds it for managers reached across hosts.
//! The server is given a certificate chain and its key
//! ([`ServerBuilder::tls`](crate::ServerBuilder::tls)); the client the CA (or root store)
//! it trusts ([`connect_tls`](crate::connect_tls)). The TLS handshake runs first, bounded
//! by the frame timeout; the authkey handshake and every message then run inside TLS.
//! TLS applies to TCP addresses only.
//!
//! A process that receives proxies of a TLS manager reaches it through its own
//! connection to that address ([`Client::shared`](crate::Client::shared)), so it must
//! [`connect_tls`](crate::connect_tls) before it decodes them; otherwise they connect
//! without TLS, and the server refuses them.
//!
//! ```
//! use flotilla_manager::{AuthKey, Server, connect_tls};
//! use flotilla_manager::tls::{TlsClientConfig, TlsServerConfig};
//!
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
//! let server_tls =
//!     TlsServerConfig::from_pem(cert.cert.pem().as_bytes(), cert.key_pair.serialize_pem().as_bytes())
//!         .unwrap();
//! let key = AuthKey::new(b"abc".to_vec());
//! let server = Server::builder("127.0.0.1:0".parse::<flotilla_manager::Address>().unwrap())
//!     .authkey(key.clone())
//!     .tls(server_tls)
//!     .bind()
//!     .unwrap()
//!     .spawn();
//! let client_tls = TlsClientConfig::with_ca_pem(cert.cert.pem().as_bytes())
//!     .unwrap()
//!     .server_name("localhost")
//!     .unwrap();
//! let client = connect_tls(server.address(), Some(&key), &client_tls).unwrap();
//! assert_eq!(client.number_of_objects().unwrap(), 0);
//! ```

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use flotilla_core::Deadline;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig};
use rustls::{ServerConnection, crypto::CryptoProvider};

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// PEM text held no item of the kind needed, or a malformed one.
    #[error("bad PEM for the {what}: {message}")]
    Pem {
        /// What it was to hold: "certificate chain", "private key", "CA certificates".
        what: &'static str,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration (a key that does not match the certificate, a
    /// CA certificate it cannot parse).
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// Not a DNS name or IP address a certificate can be checked against.
    #[error("`{0}` is not a server name (a DNS name or an IP address)")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            message: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certs)
}

/// A TLS server's configuration: its certificate chain and key.
#[derive(Clone)]
pub struct TlsServerConfig(Arc<ServerConfig>);

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServerConfig(..)")
    }
}

impl TlsServerConfig {
    /// From PEM text: `cert_chain` (the server's certificate first, then any
    /// intermediates) and `key` (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let chain = certs(cert_chain, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
            what: "private key",
            message: e.to_string(),
        })?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(TlsServerConfig(Arc::new(config)))
    }

    /// [`from_pem`](Self::from_pem) from two files.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// A configuration made with rustls directly (client certificates, say).
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        TlsServerConfig(config)
    }
}

/// A TLS client's configuration: the certificates it trusts, and the name it checks
/// the server's certificate against (by default the IP address it connects to).
#[derive(Clone)]
pub struct TlsClientConfig {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClientConfig {
    /// Trusting the CA certificate(s) in `ca` (PEM): a self-signed server certificate
    /// can be its own CA.
    pub fn with_ca_pem(ca: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certs(ca, "CA certificates")? {
            roots.add(cert)?;
        }
        Self::with_roots(roots)
    }

    /// [`with_ca_pem`](Self::with_ca_pem) from a file.
    pub fn with_ca_pem_file(ca: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::with_ca_pem(&read(ca.as_ref())?)
    }

    /// Trusting the certificates of `roots`.
    pub fn with_roots(roots: RootCertStore) -> Result<Self, TlsError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// A configuration made with rustls directly.
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        TlsClientConfig {
            config,
            server_name: None,
        }
    }

    /// Checks the server's certificate against `name` (a DNS name or an IP address)
    /// rather than the IP address connected to.
    pub fn server_name(mut self, name: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsError::ServerName(name.to_owned()))?;
        self.server_name = Some(name);
        Ok(self)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A TLS error as an I/O error, saying what may be wrong.
fn tls_io(e: rustls::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "TLS failed: {e} (do both sides speak TLS, and does the client trust the server's certificate?)"
        ),
    )
}

/// The socket during the TLS handshake: reads end at the deadline.
struct Until<'a> {
    sock: &'a TcpStream,
    deadline: Deadline,
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.deadline.remaining() {
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "it did not finish within its timeout",
                ));
            }
            // A zero timeout is refused by the OS; the check above ends the handshake.
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        self.sock.read(buf)
    }
}

impl Write for Until<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// The rustls state of a connection, shared by its handles.
struct State {
    conn: Connection,
    /// Bytes read from the socket that rustls has not taken yet.
    pending: Vec<u8>,
    /// The socket reached end of file.
    eof: bool,
}

impl State {
    /// Hands rustls what it can take of the pending bytes, processing each batch.
    fn feed(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            // An error here is a full plaintext buffer: the reader drains it first.
            let Ok(n) = self.conn.read_tls(&mut &self.pending[..]) else {
                break;
            };
            self.pending.drain(..n);
            self.conn.process_new_packets().map_err(tls_io)?;
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    /// The records rustls wants sent.
    fn outgoing(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out)?;
        }
        Ok(out)
    }
}

struct Shared {
    /// Held while records are taken from rustls and written, so they go out in order;
    /// taken before `state`, never the other way.
    send: Mutex<()>,
    state: Mutex<State>,
}

/// A TLS connection over TCP. Its handles (from [`try_clone`](Self::try_clone)) share
/// it: one reads while others write, and no handle holds the TLS state while it waits
/// on the socket.
pub(crate) struct TlsStream {
    sock: TcpStream,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    /// The client's side over `sock`, connected to `ip`; runs the TLS handshake, which
    /// must end before `deadline`.
    pub(crate) fn client(
        sock: TcpStream,
        config: &TlsClientConfig,
        ip: IpAddr,
        deadline: Deadline,
    ) -> io::Result<TlsStream> {
        let name = config
            .server_name
            .clone()
            .unwrap_or(ServerName::IpAddress(ip.into()));
        let conn = ClientConnection::new(Arc::clone(&config.config), name).map_err(tls_io)?;
        Self::handshake(sock, conn.into(), deadline)
    }

    /// The server's side over `sock`; runs the TLS handshake, which must end before
    /// `deadline`.
    pub(crate) fn server(
        sock: TcpStream,
        config: &TlsServerConfig,
        deadline: Deadline,
    ) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(Arc::clone(&config.0)).map_err(tls_io)?;
        Self::handshake(sock, conn.into(), deadline)
    }

    /// Runs the TLS handshake, each read capped at what is left before `deadline`, so a
    /// peer that trickles its bytes is cut off as one that stops; then gives the socket
    /// back its read timeout.
    fn handshake(
        sock: TcpStream,
        mut conn: Connection,
        deadline: Deadline,
    ) -> io::Result<TlsStream> {
        let read_timeout = sock.read_timeout()?;
        let mut until = Until {
            sock: &sock,
            deadline,
        };
        while conn.is_handshaking() {
            conn.complete_io(&mut until).map_err(|e| {
                if let Some(inner) = e.get_ref()
                    && let Some(tls) = inner.downcast_ref::<rustls::Error>()
                {
                    return tls_io(tls.clone());
                }
                io::Error::new(e.kind(), format!("the TLS handshake failed: {e}"))
            })?;
        }
        sock.set_read_timeout(read_timeout)?;
        Ok(TlsStream {
            sock,
            shared: Arc::new(Shared {
                send: Mutex::new(()),
                state: Mutex::new(State {
                    conn,
                    pending: Vec::new(),
                    eof: false,
                }),
            }),
        })
    }

    /// The TCP socket under it (for timeouts and shutdown).
    pub(crate) fn socket(&self) -> &TcpStream {
        &self.sock
    }

    pub(crate) fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            sock: self.sock.try_clone()?,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Sends what rustls has queued (handshake records, alerts, key updates).
    fn send_queued(&self) -> io::Result<()> {
        let _send = lock(&self.shared.send);
        let out = lock(&self.shared.state).outgoing()?;
        (&self.sock).write_all(&out)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut raw = [0u8; 16 * 1024];
        loop {
            let queued = {
                let mut state = lock(&self.shared.state);
                state.feed()?;
                match state.conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer closed without TLS's close_notify: end of file all the
                    // same (frames carry their own lengths, so nothing is mistaken).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if state.eof {
                    return Ok(0);
                }
                state.conn.wants_write()
            };
            if queued {
                self.send_queued()?;
            }
            let n = (&self.sock).read(&mut raw)?;
            let mut state = lock(&self.shared.state);
            if n == 0 {
                // Tells rustls the stream ended (once what came before is taken); the
                // next turn returns what is left, then end of file.
                state.eof = true;
                state.feed()?;
                let _ = state.conn.read_tls(&mut &[][..]);
            }
            state.pending.extend_from_slice(&raw[..n]);
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _send = lock(&self.shared.send);
        let (n, out) = {
            let mut state = lock(&self.shared.state);
            let n = state.conn.writer().write(buf)?;
            (n, state.outgoing()?)
        };
        (&self.sock).write_all(&out)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_queued()
    }
}
