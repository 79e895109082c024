//! The four tasks of the classic executor examples, shared by the executor demos.

use super::Clock;

/// One of the classic tasks: sleeps `units`, then returns its name or fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Task {
    pub(crate) name: &'static str,
    pub(crate) units: f64,
    pub(crate) fails: bool,
}

/// func1 sleeps 4, func2 sleeps 2, func3 sleeps 3 then fails, func4 sleeps 5.
pub(crate) const FOUR: [Task; 4] = [
    Task {
        name: "func1",
        units: 4.0,
        fails: false,
    },
    Task {
        name: "func2",
        units: 2.0,
        fails: false,
    },
    Task {
        name: "func3",
        units: 3.0,
        fails: true,
    },
    Task {
        name: "func4",
        units: 5.0,
        fails: false,
    },
];

/// The error func3 fails with.
#[derive(Debug)]
pub(crate) struct Func3Failed;

impl std::fmt::Display for Func3Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("func3 raised an exception")
    }
}

impl std::error::Error for Func3Failed {}

impl Task {
    /// Runs the task, saying when it starts and ends.
    pub(crate) fn run(self, clock: Clock) -> Result<String, Func3Failed> {
        clock.say(format!("{} starts (sleeps {})", self.name, self.units));
        clock.sleep(self.units);
        if self.fails {
            clock.say(format!("{} fails", self.name));
            Err(Func3Failed)
        } else {
            clock.say(format!("{} ends", self.name));
            Ok(format!("{} result", self.name))
        }
    }
}
