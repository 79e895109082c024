//! Helpers for flotilla's own tests, shared by its crates; not part of the API.

/// Pins the calling thread to `cpu`, so a test's two threads run at the same time
/// however loaded the machine is (the case a spin before blocking is for). Panics, with
/// a message that says what the test needs, when the thread cannot be pinned there.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set; CPU_SET writes within it for
    // any `cpu` below CPU_SETSIZE (checked by the assert), and sched_setaffinity only
    // reads the set we pass with its true size.
    let pinned = unsafe {
        assert!(cpu < libc::CPU_SETSIZE as usize);
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        pinned,
        0,
        "cannot pin a thread to CPU {cpu} ({}); this test needs a machine with 2 CPUs",
        std::io::Error::last_os_error()
    );
}
