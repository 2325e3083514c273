//! One file per group of runc commands; each parses nothing (clap did) and formats output only.

pub mod exec;
pub mod lifecycle;
pub mod query;
pub mod spec;
pub mod tty;
pub mod update;
