//! `cargo xtask`: the project's tasks. `demo --list`, `demo NAME...`, `demo all`, `bench`.

mod bench;
mod demo;

use anyhow::{Context, bail};

const USAGE: &str = "\
usage: cargo xtask demo --list        list the demos
       cargo xtask demo NAME...       run the named demos
       cargo xtask demo all           run every demo
       cargo xtask bench [--quick] [--write-docs] [FILTER...]
                                      measure flotilla beside CPython and the Rust
                                      peers (`cargo xtask bench --help` for more)

Demos print events with timestamps in scenario units (the classic examples' seconds);
one unit is FLOTILLA_DEMO_UNIT_MS milliseconds of real time (default 100).";

fn main() -> anyhow::Result<()> {
    // The process demos re-run this binary as workers: they start here.
    flotilla::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo::main(&args[1..]).context("demo failed"),
        Some("bench") => bench::main(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n\n{USAGE}"),
    }
}
