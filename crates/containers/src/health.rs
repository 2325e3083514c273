//! Healthchecks, docker's: the image's HEALTHCHECK, or `--health-*`, run by berthd inside the
//! running container (an exec through its shim, killed at the timeout) every interval. A
//! container is `starting` until a check passes, `healthy` after one does, and `unhealthy` after
//! `retries` failures in a row (failures within the start period do not count). Each change is
//! kept in the record and published as a `health_status: …` event. A checker ends when its
//! container stops running; berthd starts one again for each running container it recovers.

use crate::events::Action;
use crate::exec::ExecOptions;
use crate::manager::Containers;
use crate::record::State;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What to run and how often (docker's defaults: every 30 s, 30 s to answer, 3 retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The command, as exec runs it (`CMD-SHELL x` is `/bin/sh -c x`).
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// An image config's `Healthcheck` (durations in nanoseconds, 0 meaning the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageHealthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub retries: u32,
}

/// What a run asks of the check, over the image's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthOptions {
    /// `--health-cmd` (run by /bin/sh -c).
    pub cmd: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u32>,
    /// `--no-healthcheck`: none, whatever the image says.
    pub disabled: bool,
}

/// The check a container gets: the options over the image's, None when neither asks for one
/// (or the image's test is `NONE`).
pub fn resolve(image: Option<&ImageHealthcheck>, options: &HealthOptions) -> crate::Result<Option<HealthCheck>> {
    if options.disabled {
        return Ok(None);
    }
    let image = image.cloned().unwrap_or_default();
    let test = match (&options.cmd, image.test.first().map(String::as_str)) {
        (Some(cmd), _) => vec!["/bin/sh".to_string(), "-c".to_string(), cmd.clone()],
        (None, None | Some("NONE")) => return Ok(None),
        (None, Some("CMD")) if image.test.len() > 1 => image.test[1..].to_vec(),
        (None, Some("CMD-SHELL")) if image.test.len() == 2 => vec!["/bin/sh".to_string(), "-c".to_string(), image.test[1].clone()],
        (None, Some(_)) => {
            return Err(crate::Error::Invalid(format!("the image's Healthcheck test {:?}: use NONE, CMD … or CMD-SHELL …", image.test)))
        }
    };
    let or = |asked: Option<Duration>, nanos: u64, default: Duration| asked.unwrap_or(if nanos == 0 { default } else { Duration::from_nanos(nanos) });
    let check = HealthCheck {
        test,
        interval: or(options.interval, image.interval, Duration::from_secs(30)),
        timeout: or(options.timeout, image.timeout, Duration::from_secs(30)),
        start_period: or(options.start_period, image.start_period, Duration::ZERO),
        retries: options.retries.unwrap_or(if image.retries == 0 { 3 } else { image.retries }),
    };
    // docker's floor (1 ms); below it a check would be an exec storm.
    if check.interval < Duration::from_millis(1) || check.timeout < Duration::from_millis(1) {
        return Err(crate::Error::Invalid("health interval and timeout must be at least 1ms".into()));
    }
    Ok(Some(check))
}

impl Containers {
    /// Starts checking the container's health, if it has a check, until it stops running.
    pub(crate) fn check_health(&self, id: &str) {
        let Ok(entry) = self.entry(id) else { return };
        let (check, started_at) = {
            let record = entry.borrow();
            let Some(check) = record.healthcheck.clone() else { return };
            (check, record.started_at)
        };
        drop(entry);
        let (this, id) = (self.clone(), id.to_string());
        let checker = tokio::spawn(async move {
            this.set_health(&id, Health::Starting).await;
            let started = tokio::time::Instant::now();
            let mut failures = 0;
            loop {
                tokio::time::sleep(check.interval).await;
                // Ended with the run it checks: a new start has a checker of its own.
                if this.find(&id).map(|r| r.state != State::Running || r.started_at != started_at).unwrap_or(true) {
                    return;
                }
                let exec = ExecOptions { args: check.test.clone(), ..Default::default() };
                let passed = matches!(this.exec_sync(&id, exec, check.timeout).await, Ok(out) if out.exit.code == 0 && out.exit.signal.is_none());
                let health = if passed {
                    failures = 0;
                    Health::Healthy
                } else if started.elapsed() < check.start_period {
                    continue;
                } else {
                    failures += 1;
                    if failures < check.retries {
                        continue;
                    }
                    Health::Unhealthy
                };
                this.set_health(&id, health).await;
            }
        });
        if let Ok(mut followers) = self.followers.lock() {
            followers.retain(|task| !task.is_finished());
            followers.push(checker);
        }
    }

    /// Records a change of health and says so on the event bus.
    async fn set_health(&self, id: &str, health: Health) {
        let Ok(entry) = self.entry(id) else { return };
        if entry.borrow().health == Some(health) {
            return;
        }
        let record = Containers::modify(&entry, |r| r.health = Some(health));
        drop(entry);
        let _ = self.persist(&record).await;
        self.events.publish(Action::Health(health), &record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_override_the_image_and_none_disables() {
        let image =
            ImageHealthcheck { test: vec!["CMD-SHELL".into(), "test -e /ok".into()], interval: 5_000_000_000, retries: 5, ..Default::default() };
        let check = resolve(Some(&image), &HealthOptions::default()).unwrap().unwrap();
        assert_eq!(check.test, ["/bin/sh", "-c", "test -e /ok"]);
        assert_eq!((check.interval, check.timeout, check.retries), (Duration::from_secs(5), Duration::from_secs(30), 5));
        let options = HealthOptions { cmd: Some("true".into()), retries: Some(1), ..Default::default() };
        let check = resolve(Some(&image), &options).unwrap().unwrap();
        assert_eq!((check.test.last().unwrap().as_str(), check.retries), ("true", 1));
        assert_eq!(resolve(Some(&image), &HealthOptions { disabled: true, ..Default::default() }).unwrap(), None);
        let none = ImageHealthcheck { test: vec!["NONE".into()], ..Default::default() };
        assert_eq!(resolve(Some(&none), &HealthOptions::default()).unwrap(), None);
        assert_eq!(resolve(None, &HealthOptions::default()).unwrap(), None);
        let exec = ImageHealthcheck { test: vec!["CMD".into(), "/bin/check".into(), "-q".into()], ..Default::default() };
        assert_eq!(resolve(Some(&exec), &HealthOptions::default()).unwrap().unwrap().test, ["/bin/check", "-q"]);
        let odd = ImageHealthcheck { test: vec!["SHELL?".into()], ..Default::default() };
        assert!(resolve(Some(&odd), &HealthOptions::default()).is_err());
        let storm = HealthOptions { cmd: Some("true".into()), interval: Some(Duration::from_micros(100)), ..Default::default() };
        assert!(resolve(None, &storm).is_err());
    }
}
