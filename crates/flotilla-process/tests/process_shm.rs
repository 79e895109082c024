//! A named shared-memory segment whose creator is SIGKILLed is unlinked for it.

use std::time::{Duration, Instant};

use flotilla_ipc::SharedMemory;
use flotilla_process::{Process, StartMethod, get_context};

fn create_and_wait(name: String) {
    let shm = SharedMemory::create(&name, 4096).unwrap();
    std::mem::forget(shm);
    // The name is tracked once `create` returns (not as soon as it shows in /dev/shm).
    std::fs::write(marker(&name), "created").unwrap();
    std::thread::sleep(Duration::from_secs(300));
}

fn marker(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(name)
}

fn exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sigkilled_creator_leaves_no_name_behind() {
    for method in StartMethod::ALL {
        let name = format!("flotilla-test-tracked-{}-{method}", std::process::id());
        let child = if method == StartMethod::Fork {
            let n = name.clone();
            // SAFETY: the child only creates a segment and sleeps.
            unsafe { Process::fork(move || create_and_wait(n)).start_unchecked() }.unwrap()
        } else {
            get_context(Some(method))
                .process(create_and_wait, name.clone())
                .start()
                .unwrap()
        };
        wait_for(&format!("{method}: the child never created {name}"), || {
            marker(&name).exists()
        });
        let _ = std::fs::remove_file(marker(&name));
        assert!(exists(&name), "{method}");
        child.kill().unwrap();
        let _ = child.join_timeout(Duration::from_secs(60));
        let gone = std::panic::catch_unwind(|| {
            wait_for(
                &format!("{method}: {name} outlived its SIGKILLed creator"),
                || !exists(&name),
            )
        });
        let _ = nix::sys::mman::shm_unlink(name.as_str());
        if let Err(e) = gone {
            std::panic::resume_unwind(e);
        }
    }
}
