//! A child process waits, before it ends, for its non-daemon threads and its
//! non-daemonic children, as Python's do.

use std::time::Duration;

use flotilla_process::{Process, StartMethod, get_context};

const LONG: Duration = Duration::from_secs(60);

fn marker(tag: &str, method: StartMethod) -> String {
    let path = std::env::temp_dir().join(format!(
        "flotilla-exit-{tag}-{method}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path.to_str().unwrap().to_owned()
}

fn mark_later(path: String) {
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(path, "done").unwrap();
}

/// Starts a non-daemon thread that marks later, and returns at once.
fn leave_a_thread(path: String) -> u8 {
    flotilla_thread::ThreadBuilder::new()
        .daemon(false)
        .spawn(move || mark_later(path))
        .unwrap();
    7
}

/// Starts a non-daemonic child that marks later, and returns at once.
fn leave_a_child(path: String) -> u8 {
    let grandchild = get_context(Some(StartMethod::Spawn))
        .process(mark_later, path)
        .start()
        .unwrap();
    drop(grandchild);
    8
}

fn start(method: StartMethod, thread: bool, path: String) -> Process<u8> {
    let f = if thread {
        leave_a_thread
    } else {
        leave_a_child
    };
    if method == StartMethod::Fork {
        // SAFETY: the child touches no lock another thread of this test could hold
        // (threads, files, processes of its own).
        unsafe { Process::fork(move || f(path)).start_unchecked() }.unwrap()
    } else if thread {
        get_context(Some(method))
            .process(leave_a_thread, path)
            .start()
            .unwrap()
    } else {
        get_context(Some(method))
            .process(leave_a_child, path)
            .start()
            .unwrap()
    }
}

#[test]
fn a_child_joins_its_non_daemon_threads_before_it_ends() {
    for method in StartMethod::ALL {
        let path = marker("thread", method);
        let child = start(method, true, path.clone());
        assert_eq!(child.join_timeout(LONG).unwrap(), 7, "{method}");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("done"),
            "{method}: the child ended before its non-daemon thread"
        );
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_child_joins_its_non_daemonic_children_before_it_ends() {
    for method in StartMethod::ALL {
        let path = marker("child", method);
        let child = start(method, false, path.clone());
        assert_eq!(child.join_timeout(LONG).unwrap(), 8, "{method}");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("done"),
            "{method}: the child ended before its own child"
        );
        let _ = std::fs::remove_file(&path);
    }
}
