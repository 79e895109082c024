//! manager-dict-list: a manager's `dict` and a `list(range(10))` handed to two pool tasks
//! as ordinary arguments. The first sets `d[1] = '1'`, `d['2'] = 2`, `d[0.25] = None` and
//! reverses the list; the second prints both, and sees those changes: the objects live in
//! the manager's server process, and each task reached them through the proxies it was
//! given (each carries the manager's address and authkey).

use std::fmt;
use std::time::Duration;

use anyhow::ensure;
use flotilla::managers::{DictProxy, ListProxy, Manager};
use flotilla::multiprocessing::{Pool, current_process};
use serde::{Deserialize, Serialize};

use super::Clock;

const LONG: Duration = Duration::from_secs(60);

/// A Python value of the kinds this scenario stores: keys and values of mixed types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Py {
    None,
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Py {
    /// As Python's `repr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::None => write!(f, "None"),
            Py::Int(n) => write!(f, "{n}"),
            Py::Float(x) => write!(f, "{x}"),
            Py::Str(s) => write!(f, "'{s}'"),
        }
    }
}

type Args = (DictProxy<Py, Py>, ListProxy<i64>, Clock);

fn modify((d, l, clock): Args) {
    let me = current_process();
    d.set(&Py::Int(1), &Py::Str("1".into())).expect("set d[1]");
    d.set(&Py::Str("2".into()), &Py::Int(2))
        .expect("set d['2']");
    d.set(&Py::Float(0.25), &Py::None).expect("set d[0.25]");
    l.reverse().expect("reverse l");
    clock.say(format!(
        "  {} (pid {}): set d[1], d['2'], d[0.25] and reversed l",
        me.name, me.pid
    ));
}

/// Prints both as Python would, and returns what it printed.
fn show((d, l, clock): Args) -> (String, String) {
    let me = current_process();
    let items = d.items().expect("d.items()");
    let dict = format!(
        "{{{}}}",
        items
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let list = format!("{:?}", l.to_vec().expect("l[:]"));
    clock.say(format!("  {} (pid {}): d = {dict}", me.name, me.pid));
    clock.say(format!("  {} (pid {}): l = {list}", me.name, me.pid));
    (dict, list)
}

pub(crate) fn run(clock: &Clock) -> anyhow::Result<()> {
    let manager = Manager::start()?;
    clock.say(format!(
        "manager server: pid {:?}, at {}",
        manager.pid(),
        manager.address()
    ));
    let d = manager.dict::<Py, Py>()?;
    let l = manager.list::<i64>()?;
    l.extend(&(0..10).collect::<Vec<_>>())?;

    let pool = Pool::new(2)?;
    pool.apply(modify, (d.clone(), l.clone(), *clock))?;
    let pending = pool.apply_async(show, (d.clone(), l.clone(), *clock))?;
    let (dict, list) = pending.get_timeout(LONG)?;
    pool.close();
    pool.join()?;

    ensure!(dict == "{1: '1', '2': 2, 0.25: None}", "{dict}");
    ensure!(list == "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]", "{list}");
    ensure!(d.get(&Py::Float(0.25))? == Some(Py::None));
    clock.say(format!(
        "parent: l[0] = {}, len(d) = {}, objects on the server: {}",
        l.get(0)?,
        d.len()?,
        manager.number_of_objects()?
    ));
    Ok(())
}
