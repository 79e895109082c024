//! remote-queues across hosts: a server and two clients in three network namespaces (three
//! network stacks, as three hosts have), joined by veth pairs on private addresses this
//! test makes. The server listens on `0.0.0.0` with an authkey and registers two queues by
//! name; each client reaches it over its own link, puts on its own queue and reads the
//! other's.
//!
//! Needs root (CI runs as root) and `ip` (iproute2). When either is missing, or the kernel
//! refuses namespaces, the test fails saying so: it never passes without having run.
//!
//! The three programs are this test binary run again inside the namespaces
//! (`ip netns exec NS <this binary> --exact netns_role --ignored`), with the role in the
//! environment.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use common::LONG;
use flotilla_manager::{Address, AuthKey, ConnectError, QueueProxy, Server, connect};

/// The whole scenario's limit.
const LIMIT: Duration = Duration::from_secs(90);
const KEY: &[u8] = b"zhang-and-ming-across-hosts";
const PORT: u16 = 50000;
const SERVER_A: &str = "10.231.1.1";
const CLIENT_A: &str = "10.231.1.2";
const SERVER_B: &str = "10.231.2.1";
const CLIENT_B: &str = "10.231.2.2";

/// Runs `ip` with `args`; its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("could not run `ip` ({e}): install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and the processes in them; all removed on drop, however the test ends.
struct Hosts {
    names: Vec<String>,
    children: Vec<Child>,
    /// Each child's output lines, read by a thread of its own.
    lines: Vec<Receiver<String>>,
    /// When the whole scenario must have ended.
    deadline: Instant,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.names {
            // Deleting a namespace deletes the veth ends in it.
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Hosts {
    /// Three namespaces: `srv` linked to `a` by one veth pair and to `b` by another.
    fn make() -> Hosts {
        let pid = std::process::id();
        let [srv, a, b] = ["srv", "a", "b"].map(|n| format!("flotilla-{pid}-{n}"));
        let mut hosts = Hosts {
            names: Vec::new(),
            children: Vec::new(),
            lines: Vec::new(),
            deadline: Instant::now() + LIMIT,
        };
        for ns in [&srv, &a, &b] {
            if let Err(e) = ip(&["netns", "add", ns]) {
                panic!(
                    "the kernel refused a network namespace, so this multi-host test cannot \
                     run (it needs root, CONFIG_NET_NS, and a container allowing \
                     CAP_SYS_ADMIN): {e}"
                );
            }
            hosts.names.push(ns.clone());
        }
        let links = [
            (&a, "vsa", "vca", SERVER_A, CLIENT_A),
            (&b, "vsb", "vcb", SERVER_B, CLIENT_B),
        ];
        for (client_ns, server_if, client_if, server_ip, client_ip) in links {
            let server_addr = format!("{server_ip}/24");
            let client_addr = format!("{client_ip}/24");
            let steps: [&[&str]; 5] = [
                &[
                    "link", "add", server_if, "netns", &srv, "type", "veth", "peer", "name",
                    client_if, "netns", client_ns,
                ],
                &["-n", &srv, "addr", "add", &server_addr, "dev", server_if],
                &[
                    "-n",
                    client_ns,
                    "addr",
                    "add",
                    &client_addr,
                    "dev",
                    client_if,
                ],
                &["-n", &srv, "link", "set", server_if, "up"],
                &["-n", client_ns, "link", "set", client_if, "up"],
            ];
            for step in steps {
                if let Err(e) = ip(step) {
                    panic!("the kernel refused to link the namespaces with a veth pair: {e}");
                }
            }
        }
        for ns in [&srv, &a, &b] {
            ip(&["-n", ns, "link", "set", "lo", "up"]).expect("loopback up");
        }
        hosts
    }

    /// Runs this test binary's `netns_role` in namespace `ns` as `role`.
    fn run(&mut self, ns: &str, role: &str, env: &[(&str, &str)]) -> usize {
        let exe = std::env::current_exe().expect("this test binary's path");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "netns_role",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FLOTILLA_NETNS_ROLE", role)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("`ip netns exec` runs");
        // Read on a thread: a pipe's end of file may come late (a grandchild can hold
        // it), so the waits below are bounded by the deadline, not by the pipe.
        let out = child.stdout.take().expect("its stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.children.push(child);
        self.lines.push(rx);
        self.children.len() - 1
    }

    /// Waits for a line of child `i` holding `tag`; returns what follows the tag.
    fn read_tagged(&mut self, i: usize, tag: &str) -> String {
        let mut seen = Vec::new();
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines[i].recv_timeout(left) {
                // The test harness prints `test netns_role ... ` before the role's first
                // line.
                Ok(line) => match line.find(tag) {
                    Some(at) => return line[at + tag.len()..].trim().to_owned(),
                    None => seen.push(line),
                },
                Err(RecvTimeoutError::Timeout) => panic!(
                    "child {i} did not say {tag:?} within {LIMIT:?} (the scenario's limit); \
                     it said: {seen:?}"
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("child {i} ended without saying {tag:?}; it said: {seen:?}")
                }
            }
        }
    }

    /// Waits (up to the deadline) for child `i` to exit, successfully.
    fn wait_ok(&mut self, i: usize, what: &str) {
        loop {
            if let Some(status) = self.children[i].try_wait().expect("wait for a child") {
                assert!(status.success(), "{what} failed: {status}");
                return;
            }
            assert!(
                Instant::now() < self.deadline,
                "{what} did not exit within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn remote_queues_across_network_namespaces() {
    let mut hosts = Hosts::make();
    // Every wait below fails at the scenario's deadline; the children are killed and
    // the namespaces removed as `hosts` drops, however the test ends.
    {
        let [srv, a, b] = [0, 1, 2].map(|i| hosts.names[i].clone());
        let server = hosts.run(&srv, "server", &[]);
        let listening = hosts.read_tagged(server, "LISTENING");
        assert_eq!(listening, format!("0.0.0.0:{PORT}"));

        let zhang = hosts.run(
            &a,
            "client",
            &[
                ("SERVER", SERVER_A),
                ("ME", "zhang"),
                ("ME_IP", CLIENT_A),
                ("OTHER", "ming"),
            ],
        );
        let ming = hosts.run(
            &b,
            "client",
            &[
                ("SERVER", SERVER_B),
                ("ME", "ming"),
                ("ME_IP", CLIENT_B),
                ("OTHER", "zhang"),
            ],
        );
        let zhang_got = hosts.read_tagged(zhang, "GOT");
        let ming_got = hosts.read_tagged(ming, "GOT");
        assert_eq!(
            zhang_got,
            format!("hello zhang, this is ming from {CLIENT_B}")
        );
        assert_eq!(
            ming_got,
            format!("hello ming, this is zhang from {CLIENT_A}")
        );
        hosts.wait_ok(zhang, "zhang");
        hosts.wait_ok(ming, "ming");

        // A wrong key is refused across hosts too; then the right one shuts the server down.
        let stopper = hosts.run(&a, "stop", &[("SERVER", SERVER_A)]);
        assert_eq!(hosts.read_tagged(stopper, "STOPPED"), "wrong key refused");
        hosts.wait_ok(stopper, "the stopping client");
        hosts.wait_ok(server, "the server");
    }
}

/// One program of the multi-host test, run by it inside a namespace.
#[test]
#[ignore = "a role in remote_queues_across_network_namespaces, run by it in a namespace"]
fn netns_role() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set by the test"));
    let key = AuthKey::new(KEY);
    let server_at =
        |host: &str| -> Address { format!("{host}:{PORT}").parse().expect("an address") };
    match var("FLOTILLA_NETNS_ROLE").as_str() {
        "server" => {
            let server = Server::builder(format!("0.0.0.0:{PORT}").parse::<Address>().unwrap())
                .authkey(key)
                .register_object("get_zhang_queue", "Queue", &0u64)
                .register_object("get_ming_queue", "Queue", &0u64)
                .bind()
                .expect("the server binds");
            println!("LISTENING {}", server.address());
            server.serve_forever();
        }
        "client" => {
            let (me, other) = (var("ME"), var("OTHER"));
            let client = connect(&server_at(&var("SERVER")), Some(&key)).expect("connect");
            let mine: QueueProxy<String> = client.get(&format!("get_{me}_queue")).unwrap();
            let theirs: QueueProxy<String> = client.get(&format!("get_{other}_queue")).unwrap();
            let from = var("ME_IP");
            mine.put(&format!("hello {other}, this is {me} from {from}"))
                .unwrap();
            let got = theirs.get_timeout(LONG).unwrap().expect("a message");
            println!("GOT {got}");
        }
        "stop" => {
            let at = server_at(&var("SERVER"));
            let wrong = connect(&at, Some(&AuthKey::new(b"guess".to_vec())));
            assert!(matches!(wrong, Err(ConnectError::Auth { .. })), "{wrong:?}");
            connect(&at, Some(&key))
                .unwrap()
                .shutdown_server_timeout(LONG)
                .unwrap();
            println!("STOPPED wrong key refused");
        }
        other => panic!("no role {other}"),
    }
}
