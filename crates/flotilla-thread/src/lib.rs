//! Threads for flotilla: Python's `concurrent.futures.ThreadPoolExecutor`, and what
//! Python's `threading` and `queue` modules have that Rust's standard library lacks.
//!
//! - [`ThreadPoolExecutor`]: a pool of lazily started threads running closures, each
//!   submission returning a [`flotilla_core::Future`].

mod error;
mod executor;

pub use crate::error::Error;
pub use crate::executor::{Map, ThreadPoolExecutor, ThreadPoolExecutorBuilder};
