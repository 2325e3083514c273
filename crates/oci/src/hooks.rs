//! Running runtime-spec hooks: the state document on stdin, the hook's own argv and env, a timeout.

use crate::{Error, Result};
use oci_spec::runtime::Hook;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `hooks` in order; the first failure stops the rest and is returned.
pub fn run_all(hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    for hook in hooks.into_iter().flatten() {
        run(hook, state_json)?;
    }
    Ok(())
}

pub fn run(hook: &Hook, state_json: &str) -> Result<()> {
    let fail = |reason: String| Error::Hook { path: hook.path().clone(), reason };
    let mut command = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        command.arg0(argv0).args(rest);
    }
    // A hook without `env` inherits the runtime's environment, one with `env` (even empty) gets
    // exactly that: as runc and crun (Go's exec.Cmd with a nil Env) do.
    if let Some(env) = hook.env() {
        command.env_clear();
        for (key, value) in env.iter().filter_map(|entry| entry.split_once('=')) {
            command.env(key, value);
        }
    }
    command.stdin(Stdio::piped()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
    let mut child = command.spawn().map_err(|e| fail(format!("start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = hook.timeout().map(|secs| Instant::now() + Duration::from_secs(secs as u64));
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| fail(format!("wait: {e}")))? {
            return if status.success() { Ok(()) } else { Err(fail(format!("exited with {status}"))) };
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {}s", hook.timeout().unwrap_or(0))));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
