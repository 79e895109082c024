//! Finding the Pythons on the machine and running scripts in them, with deadlines.

#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wait_timeout::ChildExt;

/// How long any one Python step may take before the test fails.
pub(crate) const STEP: Duration = Duration::from_secs(45);

fn version(python: &PathBuf) -> Option<(u32, u32)> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Every python3 this machine has: the one on PATH and pyenv's.
fn candidates() -> Vec<(PathBuf, (u32, u32))> {
    let mut found = Vec::new();
    let mut paths = vec![PathBuf::from("python3")];
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = root
        && let Ok(dir) = std::fs::read_dir(root.join("versions"))
    {
        let mut dirs: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        dirs.sort();
        paths.extend(dirs.into_iter().map(|d| d.join("bin/python3")));
    }
    for p in paths {
        if let Some(v) = version(&p) {
            found.push((p, v));
        }
    }
    found
}

/// Every CPython 3.12 or newer (the SHA-256 handshake) found; none when
/// `FLOTILLA_TEST_NO_MODERN_PYTHON` is set, to try the fallback below on a machine that
/// has them.
fn modern() -> Vec<PathBuf> {
    if std::env::var_os("FLOTILLA_TEST_NO_MODERN_PYTHON").is_some() {
        return Vec::new();
    }
    candidates()
        .into_iter()
        .filter(|(_, v)| *v >= (3, 12))
        .map(|(p, _)| p)
        .collect()
}

/// Whether this machine has no CPython 3.12+, so the "modern" tests run against a 3.11
/// with the legacy handshake (Debian 12 ships only 3.11): every `Options` they make
/// turns `legacy_md5` on then. Said once on stderr, so it is never silent.
pub(crate) fn only_legacy() -> bool {
    static ONLY_LEGACY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONLY_LEGACY.get_or_init(|| {
        let none = modern().is_empty();
        if none {
            eprintln!(
                "note: no CPython 3.12+ here (python3 on PATH, or under $(pyenv root)/versions); \
                 the interop tests run against {} with the legacy HMAC-MD5 handshake instead. \
                 Install a 3.12+ (e.g. `pyenv install 3.12`) to test the SHA-256 one.",
                python_legacy().display()
            );
        }
        none
    })
}

/// A CPython 3.12 or newer: the newest found, else (see [`only_legacy`]) a 3.11.
pub(crate) fn python_modern() -> PathBuf {
    pythons_modern().pop().expect("at least one")
}

/// Every CPython 3.12 or newer found, else (see [`only_legacy`]) a 3.11.
pub(crate) fn pythons_modern() -> Vec<PathBuf> {
    if only_legacy() {
        return vec![python_legacy()];
    }
    modern()
}

/// A CPython 3.11 or older (the legacy HMAC-MD5 handshake), or a failure saying what to
/// install.
pub(crate) fn python_legacy() -> PathBuf {
    candidates()
        .into_iter()
        .find(|(_, v)| *v < (3, 12) && *v >= (3, 8))
        .map(|(p, _)| p)
        .expect(
            "this test needs a CPython 3.8-3.11 (the legacy HMAC-MD5 handshake) on PATH or under \
             $(pyenv root)/versions: install one, e.g. `apt-get install python3` on Debian 12",
        )
}

/// A running Python script: its stdout lines arrive through a channel.
pub(crate) struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Runs `script` with `python`, its arguments after it.
pub(crate) fn spawn(python: &PathBuf, script: &str, args: &[&str]) -> Py {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Py {
        child,
        lines,
        stderr: Some(stderr),
    }
}

impl Py {
    /// The next line the script prints, within [`STEP`].
    pub(crate) fn line(&mut self) -> String {
        match self.lines.recv_timeout(STEP) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!("the Python script printed no line in time; stderr:\n{err:?}");
            }
        }
    }

    /// Waits (within [`STEP`]) for the script to exit 0, and returns its remaining
    /// output lines.
    pub(crate) fn finish(mut self) -> Vec<String> {
        let status = self.child.wait_timeout(STEP).expect("wait");
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("the Python script did not finish in time");
        };
        let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
        assert!(
            status.success(),
            "the Python script failed: {status}\n{}",
            err.unwrap_or_default()
        );
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(STEP) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the script's output never closed"),
            }
        }
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        // A test that failed half-way leaves no Python behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Unix socket path in a fresh temporary directory.
pub(crate) fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flotilla-pycompat-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("sock")
}
