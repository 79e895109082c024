//! python-interop: a Python script and a Rust program share work through a Python
//! manager's queues. The script serves a `BaseManager` with two registered queues
//! (`get_tasks`, `get_results`), puts five numbers on the first; Rust, a client of that
//! manager (flotilla's `pycompat`), takes them, squares them and puts the results on the
//! second, which the script reads and prints.
//!
//! It runs the newest CPython 3.12+ it finds (pyenv's included), else `python3` with the
//! legacy HMAC-MD5 handshake that Python 3.11 and older speak.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use flotilla::pycompat::{ManagerClient, Options};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

const SCRIPT: &str = r#"
import queue, sys, threading
from multiprocessing.managers import BaseManager
tasks, results = queue.Queue(), queue.Queue()
class Jobs(BaseManager):
    pass
Jobs.register('get_tasks', callable=lambda: tasks)
Jobs.register('get_results', callable=lambda: results)
server = Jobs(address=('127.0.0.1', 0), authkey=b'demo-key').get_server()
threading.Thread(target=server.serve_forever, daemon=True).start()
print('%s:%d' % server.address, flush=True)
# The same script is also a client of its manager, as another Python process would be.
client = Jobs(address=server.address, authkey=b'demo-key')
client.connect()
t, r = client.get_tasks(), client.get_results()
for n in range(1, 6):
    t.put(n)
t.put(None)
print('python put 1..5 and a None to stop', flush=True)
for _ in range(5):
    print('python got', r.get(timeout=60), flush=True)
"#;

fn version(python: &PathBuf) -> Option<(u32, u32)> {
    let out = Command::new(python)
        .args(["-c", "import sys; print(*sys.version_info[:2])"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace().map(|p| p.parse().ok());
    Some((it.next()??, it.next()??))
}

/// The newest CPython 3.12+ found, else `python3` (whatever its version).
fn python() -> anyhow::Result<(PathBuf, (u32, u32))> {
    let mut found: Vec<(PathBuf, (u32, u32))> = Vec::new();
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(Ok(dir)) = root.map(|r| std::fs::read_dir(r.join("versions"))) {
        for entry in dir.flatten() {
            let p = entry.path().join("bin/python3");
            if let Some(v) = version(&p) {
                found.push((p, v));
            }
        }
    }
    let plain = PathBuf::from("python3");
    if let Some(v) = version(&plain) {
        found.push((plain, v));
    }
    found
        .into_iter()
        .max_by_key(|(_, v)| *v)
        .context("the python-interop demo needs python3 on PATH: install CPython 3")
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let (python, (major, minor)) = python()?;
    let legacy = (major, minor) < (3, 12);
    clock.say(format!(
        "python {major}.{minor} ({}){}",
        python.display(),
        if legacy { ", legacy MD5 handshake" } else { "" }
    ));
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = child.stdout.take().context("piped")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let result = (|| {
        let address = lines
            .recv_timeout(LONG)
            .context("the script printed no address")?;
        clock.say(format!("python serves its manager on {address}"));
        let options = Options::new()
            .authkey(b"demo-key")
            .legacy_md5(legacy)
            .timeout(LONG);
        let manager = ManagerClient::connect(&address.parse()?, options)?;
        let tasks = manager.queue("get_tasks", &())?;
        let results = manager.queue("get_results", &())?;
        let mut done = 0;
        while let Some(n) = tasks.get_timeout::<Option<i64>>(LONG)? {
            clock.say(format!("rust   took {n}, puts {}", n * n));
            results.put(&(n, n * n, "squared in Rust"))?;
            done += 1;
        }
        ensure!(done == 5, "Rust took {done} tasks");
        let mut got = Vec::new();
        while got.len() < 5 {
            let line = lines
                .recv_timeout(LONG)
                .context("the script stopped printing")?;
            clock.say(&line);
            if line.starts_with("python got") {
                got.push(line);
            }
        }
        ensure!(
            got[4] == "python got (5, 25, 'squared in Rust')",
            "python read {got:?}"
        );
        Ok(())
    })();
    match child.wait()? {
        status if status.success() || result.is_err() => result,
        status => bail!("the Python script failed: {status}"),
    }
}
