//! `memory.checkBeforeUpdate`: a new limit below what the cgroup already uses is refused instead of
//! written, because writing it would make the kernel reclaim or OOM-kill the container.

use crate::{Error, Result};
use oci_spec::runtime::LinuxMemory;
use std::path::Path;

/// Checks the spec's limit against the usage in `dir/usage_file` (v1 memory.usage_in_bytes, v2
/// memory.current) when the spec asks for it.
pub(crate) fn check_before_update(dir: &Path, usage_file: &str, memory: &LinuxMemory) -> Result<()> {
    let Some(limit) = memory.limit().filter(|l| *l >= 0 && memory.check_before_update() == Some(true)) else { return Ok(()) };
    let path = dir.join(usage_file);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let usage: u64 = text.trim().parse().map_err(|_| Error::InvalidResource("memory usage", text.trim().to_string()))?;
    if usage > limit as u64 {
        return Err(Error::InvalidResource("memory.limit", format!("{limit} is below the current usage of {usage} bytes (checkBeforeUpdate)")));
    }
    Ok(())
}
