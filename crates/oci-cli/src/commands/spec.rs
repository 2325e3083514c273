//! `spec`: write a starting config.json, as `runc spec` does.

use crate::cli::SpecArgs;
use anyhow::{bail, Context};

pub fn run(args: &SpecArgs) -> anyhow::Result<i32> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    let spec = berth_spec::template::default_spec(args.rootless);
    let json = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, json).with_context(|| format!("write {}", path.display()))?;
    Ok(0)
}
