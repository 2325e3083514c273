//! A peer tool that drives berth-oci (podman, containerd's `ctr`), privately configured for one
//! test: its command line, run with output captured through the test's files.

use crate::TestEnv;
use std::process::{Command, Output};

pub trait Peer {
    fn env(&self) -> &TestEnv;

    /// The tool with this test's private configuration, then `args`.
    fn command(&self, args: &[&str]) -> Command;

    fn run(&self, args: &[&str]) -> Output {
        self.env().capture(&mut self.command(args))
    }

    /// Runs and insists on success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let program = self.command(&[]).get_program().to_string_lossy().into_owned();
        assert!(out.status.success(), "{program} {args:?}: {}\nstdout: {}\nstderr: {}", out.status, text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }
}
