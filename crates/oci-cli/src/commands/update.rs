//! `update`: new resources from -r (a linux.resources JSON) and/or flags, merged over the current
//! ones: what -r leaves out keeps its value and its record, as with runc.

use crate::cli::UpdateArgs;
use anyhow::{bail, Context};
use berth_oci::state::Container;
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

const MAX_RESOURCES_JSON: u64 = 1 << 20;

pub fn run(root: &Path, args: &UpdateArgs) -> anyhow::Result<i32> {
    let container = Container::load(root, &args.id)?;
    let mut resources = container.config.linux().as_ref().and_then(|l| l.resources().clone()).unwrap_or_default();
    if let Some(path) = &args.resources {
        let mut doc = serde_json::to_value(&resources)?;
        merge(&mut doc, serde_json::to_value(read_resources(path)?)?);
        resources = serde_json::from_value(doc).context("resources after merging -r")?;
    }
    apply_flags(&mut resources, args)?;
    berth_oci::manage::update(root, &args.id, &resources)?;
    Ok(0)
}

fn read_resources(path: &Path) -> anyhow::Result<LinuxResources> {
    let mut text = String::new();
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?)
    };
    reader.take(MAX_RESOURCES_JSON + 1).read_to_string(&mut text).context("read resources")?;
    if text.len() as u64 > MAX_RESOURCES_JSON {
        bail!("resources JSON is larger than {MAX_RESOURCES_JSON} bytes");
    }
    serde_json::from_str(&text).context("parse resources JSON")
}

/// `over` onto `doc`: objects key by key, anything else (a device list, a limit) replaced whole.
fn merge(doc: &mut Value, over: Value) {
    match (doc, over) {
        (Value::Object(doc), Value::Object(over)) => {
            for (key, value) in over {
                merge(doc.entry(key).or_insert(Value::Null), value);
            }
        }
        (_, Value::Null) => {}
        (doc, over) => *doc = over,
    }
}

/// Flags override fields of the resources document; merging as JSON keeps every other field intact.
fn apply_flags(resources: &mut LinuxResources, args: &UpdateArgs) -> anyhow::Result<()> {
    let mut doc = serde_json::to_value(&*resources)?;
    let mut set = |section: &str, key: &str, value: Option<Value>| {
        if let Some(value) = value {
            if !doc[section].is_object() {
                doc[section] = json!({});
            }
            doc[section][key] = value;
        }
    };
    let bytes = |text: &Option<String>| text.as_deref().map(parse_bytes).transpose();
    set("memory", "limit", bytes(&args.memory)?.map(Value::from));
    set("memory", "reservation", bytes(&args.memory_reservation)?.map(Value::from));
    set("memory", "swap", bytes(&args.memory_swap)?.map(Value::from));
    set("cpu", "period", args.cpu_period.map(Value::from));
    set("cpu", "quota", args.cpu_quota.map(Value::from));
    set("cpu", "shares", args.cpu_share.map(Value::from));
    set("cpu", "realtimePeriod", args.cpu_rt_period.map(Value::from));
    set("cpu", "realtimeRuntime", args.cpu_rt_runtime.map(Value::from));
    set("cpu", "cpus", args.cpuset_cpus.clone().map(Value::from));
    set("cpu", "mems", args.cpuset_mems.clone().map(Value::from));
    set("pids", "limit", args.pids_limit.map(Value::from));
    set("blockIO", "weight", args.blkio_weight.map(Value::from));
    *resources = serde_json::from_value(doc).context("resources after applying flags")?;
    Ok(())
}

/// "512m", "1g", "1048576", "-1": docker-style sizes (binary units).
pub fn parse_bytes(text: &str) -> anyhow::Result<i64> {
    if text == "-1" {
        return Ok(-1);
    }
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (number, multiplier) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1i64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let value: i64 = number.trim().parse().with_context(|| format!("invalid size {text:?}"))?;
    if value < 0 {
        bail!("invalid size {text:?}");
    }
    value.checked_mul(multiplier).with_context(|| format!("size {text:?} overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("-5").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999t").is_err());
    }

    #[test]
    fn a_partial_document_keeps_what_it_leaves_out() {
        let mut doc = json!({"memory": {"limit": 100, "swap": 200}, "devices": [{"allow": false, "access": "rwm"}], "pids": {"limit": 5}});
        merge(&mut doc, json!({"memory": {"limit": 50}, "devices": [], "cpu": {"shares": 2}, "pids": null}));
        assert_eq!(doc, json!({"memory": {"limit": 50, "swap": 200}, "devices": [], "pids": {"limit": 5}, "cpu": {"shares": 2}}));
    }
}
