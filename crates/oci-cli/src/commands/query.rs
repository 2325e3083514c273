//! state, list, ps, events: read-only views of containers.

use anyhow::{bail, Context};
use berth_oci::state::{list_ids, Container};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub fn state(root: &Path, id: &str) -> anyhow::Result<i32> {
    let container = Container::load(root, id)?;
    println!("{}", serde_json::to_string_pretty(&container.oci_state(container.status()))?);
    Ok(0)
}

pub fn list(root: &Path, format: &str, quiet: bool) -> anyhow::Result<i32> {
    let containers: Vec<Container> = list_ids(root)?.into_iter().filter_map(|id| Container::load(root, &id).ok()).collect();
    let mut out = std::io::stdout().lock();
    if quiet {
        for c in &containers {
            writeln!(out, "{}", c.id)?;
        }
        return Ok(0);
    }
    match format {
        "json" => {
            let states: Vec<_> = containers.iter().map(|c| c.oci_state(c.status())).collect();
            writeln!(out, "{}", serde_json::to_string(&states)?)?;
        }
        "table" => {
            writeln!(out, "{:<20} {:<8} {:<10} {:<50} {:<31} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED")?;
            for c in &containers {
                let status = c.status();
                let pid = if status == berth_oci::Status::Stopped { 0 } else { c.pid };
                writeln!(
                    out,
                    "{:<20} {:<8} {:<10} {:<50} {:<31} {}",
                    c.id,
                    pid,
                    status,
                    c.bundle.display(),
                    c.created,
                    if c.owner.is_empty() { "root" } else { &c.owner }
                )?;
            }
        }
        other => bail!("invalid format {other:?} (table or json)"),
    }
    Ok(0)
}

pub fn ps(root: &Path, id: &str, format: &str, ps_args: &[String]) -> anyhow::Result<i32> {
    let pids = berth_oci::manage::processes(root, id)?;
    match format {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            Ok(0)
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
            let output = std::process::Command::new("ps").args(&args).output().context("run ps")?;
            if !output.status.success() {
                bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
            }
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_column = header.split_whitespace().position(|h| h == "PID").context("ps output has no PID column")?;
            println!("{header}");
            for line in lines {
                let pid = line.split_whitespace().nth(pid_column).and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{line}");
                }
            }
            Ok(0)
        }
        other => bail!("invalid format {other:?} (table or json)"),
    }
}

/// Parses "5s", "500ms", "1m" (Go duration style, the common subset).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().with_context(|| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("invalid duration unit in {text:?}"),
    };
    if !(seconds > 0.0 && seconds < 1e9) {
        bail!("duration {text:?} must be positive");
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// How often the event stream looks at the OOM counter between statistics.
const OOM_POLL: Duration = Duration::from_millis(100);

/// runc's event stream: `stats` every interval and an `oom` event whenever the kernel's OOM killer
/// struck in the container; ends when the container stops.
pub fn events(root: &Path, id: &str, once: bool, interval: &str) -> anyhow::Result<i32> {
    let interval = parse_duration(interval)?;
    let emit = |kind: &str, data: serde_json::Value| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::json!({ "type": kind, "id": id, "data": data }))?;
        out.flush()
    };
    if once {
        emit("stats", serde_json::to_value(berth_oci::manage::stats(root, id)?)?)?;
        return Ok(0);
    }
    let mut oom_kills = berth_oci::manage::oom_kills(root, id).unwrap_or(0);
    let mut next_stats = std::time::Instant::now();
    loop {
        // Read before the counter: an OOM kill of the init itself is still reported.
        let running = berth_oci::manage::is_running(root, id);
        if let Ok(kills) = berth_oci::manage::oom_kills(root, id) {
            if kills > oom_kills {
                emit("oom", serde_json::Value::Null)?;
            }
            oom_kills = kills;
        }
        if !running {
            return Ok(0);
        }
        if std::time::Instant::now() >= next_stats {
            if let Ok(stats) = berth_oci::manage::stats(root, id) {
                emit("stats", serde_json::to_value(stats)?)?;
            }
            next_stats += interval;
        }
        std::thread::sleep(OOM_POLL.min(interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
