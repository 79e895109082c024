//! Helpers shared by the process tests.

/// True once `pid` no longer runs (gone, or a zombie waiting for its reaper).
pub(crate) fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}
