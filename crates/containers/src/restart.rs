//! Restart policies (`--restart`, docker's): berthd starts an exited container again when its
//! policy says so, both when it sees the exit and, at its own start, for containers that exited
//! while it was down (a host reboot among them).
//!
//! - `no` (the default), `on-failure[:N]` (a non-zero exit, at most N restarts; any number
//!   without N), `always`, `unless-stopped`.
//! - Back-off as docker's: 100 ms before the first restart, doubling up to a minute, back to
//!   100 ms once a run lasted 10 s.
//! - A container stopped or killed through berth (`stop`, `kill`, `rm -f`) is not restarted until
//!   it is started again by hand, which also resets its count. At berthd's start an `always`
//!   container is restarted even so, an `unless-stopped` one is not: docker's difference.
//! - `--rm` and a policy other than `no` are refused together, as docker refuses them.

use crate::manager::Containers;
use crate::record::State;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// At most `max_retries` restarts after non-zero exits; 0 for no limit.
    OnFailure {
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<RestartPolicy, String> {
        let (name, count) = match s.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (s, None),
        };
        match (name, count) {
            ("" | "no", None) => Ok(RestartPolicy::No),
            ("always", None) => Ok(RestartPolicy::Always),
            ("unless-stopped", None) => Ok(RestartPolicy::UnlessStopped),
            ("on-failure", None) => Ok(RestartPolicy::OnFailure { max_retries: 0 }),
            ("on-failure", Some(count)) => match count.parse() {
                Ok(max_retries) => Ok(RestartPolicy::OnFailure { max_retries }),
                Err(_) => Err(format!("restart policy {s:?}: on-failure:N takes a count")),
            },
            ("no" | "always" | "unless-stopped", Some(_)) => Err(format!("restart policy {s:?}: only on-failure takes a count")),
            _ => Err(format!("restart policy {s:?}: no, on-failure[:N], always or unless-stopped")),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max_retries: 0 } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max_retries } => write!(f, "on-failure:{max_retries}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl RestartPolicy {
    /// Whether an exit with `code`, after `count` restarts, calls for another; `at_start` is
    /// berthd's own start.
    fn wants(self, code: i32, count: u32, stopped_by_user: bool, at_start: bool) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max_retries } => !stopped_by_user && code != 0 && (max_retries == 0 || count < max_retries),
            RestartPolicy::Always => !stopped_by_user || at_start,
            RestartPolicy::UnlessStopped => !stopped_by_user,
        }
    }
}

/// The first back-off, its ceiling, and the run that resets it.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
const STEADY_RUN: Duration = Duration::from_secs(10);

/// The delay before restart number `step` (0-based) of a streak of short runs.
fn delay(step: u32) -> Duration {
    FIRST_DELAY.saturating_mul(1 << step.min(10)).min(MAX_DELAY)
}

impl Containers {
    /// Schedules the exited container's restart if its policy wants one and none is pending.
    pub(crate) fn restart_if_wanted(&self, id: &str, at_start: bool) {
        let Some(entry) = self.table().get(id) else { return };
        let mut step = None;
        Containers::modify(&entry, |r| {
            if r.state != State::Exited || r.removing || r.restart_pending || r.auto_remove {
                return;
            }
            if !r.restart.wants(r.exit_code.unwrap_or(255), r.restart_count, r.stopped_by_user, at_start) {
                return;
            }
            let ran = Duration::from_nanos(r.finished_at.saturating_sub(r.started_at));
            if ran >= STEADY_RUN {
                r.restart_backoff = 0;
            }
            step = Some(r.restart_backoff);
            r.restart_backoff = r.restart_backoff.saturating_add(1);
            r.restart_pending = true;
            if at_start {
                // docker's `always` at the daemon's start: a hand's stop no longer holds.
                r.stopped_by_user = false;
            }
        });
        drop(entry);
        let Some(step) = step else { return };
        let (this, id) = (self.clone(), id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(if at_start { Duration::ZERO } else { delay(step) }).await;
            if let Err(e) = this.restart_now(&id).await {
                tracing::warn!(container = crate::record::short(&id), "restart: {e}");
            }
        });
    }

    /// The pending restart, unless a hand stopped or removed the container meanwhile (checked
    /// again once it is created: a stop or rm that came then wins, and the restart yields).
    /// While it runs the record says `restarting`, which `rm` waits out.
    async fn restart_now(&self, id: &str) -> Result<()> {
        let entry = self.entry(id)?;
        let mut go = false;
        Containers::modify(&entry, |r| {
            r.restart_pending = false;
            go = r.state == State::Exited && !r.removing && !r.stopped_by_user;
            r.restarting = go;
        });
        drop(entry);
        if !go {
            return Ok(());
        }
        let started = self.restart_prepared(id).await;
        if let Ok(entry) = self.entry(id) {
            let failed = started.is_err();
            let record = Containers::modify(&entry, |r| {
                r.restarting = false;
                // A start that failed counts (on-failure's limit ends one that always fails).
                r.restart_count += u32::from(failed);
            });
            drop(entry);
            if failed {
                self.persist(&record).await?;
                // It stays exited: the next attempt after a longer back-off, if still wanted.
                self.restart_if_wanted(id, false);
            }
        }
        started
    }

    async fn restart_prepared(&self, id: &str) -> Result<()> {
        let record = self.prepare(id).await?;
        if self.find(id).is_ok_and(|r| r.stopped_by_user || r.removing) {
            let _ = self.stop(&record.id, Duration::ZERO).await;
            return Ok(());
        }
        self.start_prepared(&record, true).await.map(|_| ())
    }

    /// A hand's stop, kill or removal: no restart until a hand starts it again.
    pub(crate) async fn stopped_by_hand(&self, id: &str) -> Result<()> {
        let entry = self.entry(id)?;
        let mut changed = false;
        let record = Containers::modify(&entry, |r| {
            changed = !r.stopped_by_user && r.restart != RestartPolicy::No;
            r.stopped_by_user = true;
        });
        drop(entry);
        if changed {
            self.persist(&record).await?;
        }
        Ok(())
    }

    /// A hand's start: its policy holds again, its count starts over.
    pub(crate) fn started_by_hand(&self, id: &str) -> Result<()> {
        let entry = self.entry(id)?;
        Containers::modify(&entry, |r| {
            r.stopped_by_user = false;
            r.restart_count = 0;
            r.restart_backoff = 0;
        });
        Ok(())
    }
}

/// `--rm` with a policy: refused, as docker does (which of the two would win is anyone's guess).
pub fn check_with_auto_remove(policy: RestartPolicy, auto_remove: bool) -> Result<()> {
    if auto_remove && policy != RestartPolicy::No {
        return Err(Error::Invalid(format!("--restart {policy} and --rm: a container cannot be both restarted and removed when it exits")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_docker_spells_them() {
        for (text, policy) in [
            ("no", RestartPolicy::No),
            ("", RestartPolicy::No),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
            ("on-failure", RestartPolicy::OnFailure { max_retries: 0 }),
            ("on-failure:3", RestartPolicy::OnFailure { max_retries: 3 }),
        ] {
            assert_eq!(text.parse::<RestartPolicy>(), Ok(policy), "{text}");
            if !text.is_empty() {
                assert_eq!(policy.to_string(), text);
            }
        }
        for bad in ["on-failure:x", "always:2", "sometimes", "on-failure:-1", "on-failures"] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn what_each_policy_restarts() {
        let on_failure = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(on_failure.wants(1, 1, false, false) && !on_failure.wants(0, 0, false, false) && !on_failure.wants(1, 2, false, false));
        assert!(RestartPolicy::OnFailure { max_retries: 0 }.wants(1, 1000, false, false));
        assert!(RestartPolicy::Always.wants(0, 5, false, false) && !RestartPolicy::Always.wants(0, 0, true, false));
        assert!(RestartPolicy::Always.wants(0, 0, true, true), "always: a hand's stop does not outlive berthd");
        assert!(!RestartPolicy::UnlessStopped.wants(0, 0, true, true), "unless-stopped: it does");
        assert!(!RestartPolicy::No.wants(1, 0, false, true));
        assert_eq!((delay(0), delay(1), delay(3), delay(40)), (FIRST_DELAY, FIRST_DELAY * 2, FIRST_DELAY * 8, MAX_DELAY));
        assert!(check_with_auto_remove(RestartPolicy::Always, true).is_err() && check_with_auto_remove(RestartPolicy::No, true).is_ok());
    }
}
