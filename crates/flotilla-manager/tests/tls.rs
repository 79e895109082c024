//! TLS on TCP (the `tls` feature), with self-signed certificates made at test time: a
//! TLS client talks to a TLS server, and every mismatch (a plain client, a plain server,
//! an untrusted certificate, a Unix socket) fails with an error saying so.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{LONG, TempDir, with_deadline};
use flotilla_manager::tls::{TlsClientConfig, TlsServerConfig};
use flotilla_manager::{
    Address, AuthError, AuthKey, BindError, ConnectError, RunningServer, Server, connect_tls,
};

fn key() -> AuthKey {
    AuthKey::new(b"sesame".to_vec())
}

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}

fn serve(tls: Option<TlsServerConfig>) -> RunningServer {
    let mut b = Server::builder("127.0.0.1:0".parse::<Address>().unwrap()).authkey(key());
    if let Some(tls) = tls {
        b = b.tls(tls);
    }
    b.bind().unwrap().spawn()
}

#[test]
fn a_tls_client_talks_to_a_tls_server() {
    let (cert, pem_key) = self_signed();
    let server = serve(Some(
        TlsServerConfig::from_pem(cert.as_bytes(), pem_key.as_bytes()).unwrap(),
    ));
    let addr = server.address().clone();
    with_deadline(LONG, "TLS round trips", move || {
        // Checked against the IP address connected to, then against a DNS name.
        let by_ip = TlsClientConfig::with_ca_pem(cert.as_bytes()).unwrap();
        let by_name = by_ip.clone().server_name("localhost").unwrap();
        let a = connect_tls(&addr, Some(&key()), &by_ip).unwrap();
        let b = connect_tls(&addr, Some(&key()), &by_name).unwrap();
        let q = a.queue::<Vec<u8>>(0).unwrap();
        let q2 = b.queue::<String>(0).unwrap();
        // Several TLS records each way, and a second connection alongside.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        q.put(&big).unwrap();
        q2.put(&"hi".to_string()).unwrap();
        assert_eq!(q.get().unwrap(), big);
        assert_eq!(q2.get().unwrap(), "hi");
        assert_eq!(a.number_of_objects().unwrap(), 2);
    });
    drop(server);
}

#[test]
fn a_plain_client_to_a_tls_server_fails_saying_so() {
    let (cert, pem_key) = self_signed();
    let server = serve(Some(
        TlsServerConfig::from_pem(cert.as_bytes(), pem_key.as_bytes()).unwrap(),
    ));
    let addr = server.address().clone();
    let err = with_deadline(LONG, "plain connect", move || {
        flotilla_manager::testing::connect_with_timeout(&addr, Some(&key()), Duration::from_secs(2))
            .unwrap_err()
    });
    assert!(
        matches!(
            err,
            ConnectError::Auth {
                source: AuthError::ServerSilent(_),
                ..
            }
        ),
        "{err}"
    );
    eprintln!("{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[test]
fn a_tls_client_to_a_plain_server_fails_saying_so() {
    let (cert, _) = self_signed();
    let server = serve(None);
    let addr = server.address().clone();
    let err = with_deadline(LONG, "TLS connect", move || {
        let tls = TlsClientConfig::with_ca_pem(cert.as_bytes()).unwrap();
        connect_tls(&addr, Some(&key()), &tls).unwrap_err()
    });
    assert!(matches!(err, ConnectError::Io { .. }), "{err}");
    eprintln!("{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let (cert, pem_key) = self_signed();
    let (other, _) = self_signed();
    let server = serve(Some(
        TlsServerConfig::from_pem(cert.as_bytes(), pem_key.as_bytes()).unwrap(),
    ));
    let addr = server.address().clone();
    let err = with_deadline(LONG, "TLS connect", move || {
        let tls = TlsClientConfig::with_ca_pem(other.as_bytes()).unwrap();
        connect_tls(&addr, Some(&key()), &tls).unwrap_err()
    });
    eprintln!("{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
    // The server goes on serving trusting clients.
    let addr = server.address().clone();
    with_deadline(LONG, "TLS connect", move || {
        let tls = TlsClientConfig::with_ca_pem(cert.as_bytes()).unwrap();
        connect_tls(&addr, Some(&key()), &tls).unwrap();
    });
}

#[test]
fn a_trickling_tls_handshake_is_cut_off_at_the_connections_one_deadline() {
    let (cert, pem_key) = self_signed();
    let timeout = Duration::from_secs(2);
    let server = Server::builder("127.0.0.1:0".parse::<Address>().unwrap())
        .authkey(key())
        .frame_timeout(timeout)
        .tls(TlsServerConfig::from_pem(cert.as_bytes(), pem_key.as_bytes()).unwrap())
        .bind()
        .unwrap()
        .spawn();
    let Address::Tcp(addr) = server.address().clone() else {
        unreachable!("a TCP server")
    };
    let closed_after = with_deadline(LONG, "trickle", move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        // A TLS handshake record announcing 16 KiB, then one byte every 200 ms: each
        // well within the read timeout, so only a deadline for the whole handshake ends
        // it (at this pace the record would take nearly an hour).
        s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00]).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(150));
            if s.write_all(&[0]).is_err() {
                return Some(start.elapsed());
            }
            match s.read(&mut [0u8; 64]) {
                Ok(0) => return Some(start.elapsed()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // An alert, or a reset: the server gave up.
                _ => return Some(start.elapsed()),
            }
        }
        None
    });
    let took = closed_after.expect("the server kept a trickling TLS handshake open for 20 s");
    assert!(took >= timeout / 2, "cut off after only {took:?}");
    drop(server);
}

#[test]
fn bad_pem_and_unix_sockets_are_refused_clearly() {
    let (cert, pem_key) = self_signed();
    let err = TlsServerConfig::from_pem(b"not pem", pem_key.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("certificate chain"), "{err}");
    let err = TlsServerConfig::from_pem(cert.as_bytes(), b"").unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    assert!(TlsClientConfig::with_ca_pem(b"").is_err());
    let dir = TempDir::new("tls-unix");
    let tls = TlsServerConfig::from_pem(cert.as_bytes(), pem_key.as_bytes()).unwrap();
    let err = Server::builder(dir.sock("m.sock"))
        .tls(tls)
        .bind()
        .unwrap_err();
    assert!(matches!(err, BindError::TlsNeedsTcp(_)), "{err}");
}
