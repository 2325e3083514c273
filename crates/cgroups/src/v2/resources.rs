//! Writing runtime-spec `linux.resources` to v2 interface files (names and unit conversions as runc
//! and crun do them).

use super::write;
use crate::{Error, Result};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};
use std::path::Path;

pub(super) fn apply(dir: &Path, resources: &LinuxResources) -> Result<()> {
    if let Some(memory) = resources.memory() {
        apply_memory(dir, memory)?;
    }
    if let Some(cpu) = resources.cpu() {
        apply_cpu(dir, cpu)?;
    }
    if let Some(pids) = resources.pids() {
        write(dir, "pids.max", &if pids.limit() > 0 { pids.limit().to_string() } else { "max".into() })?;
    }
    if let Some(block_io) = resources.block_io() {
        // 0 means "not set", as in runc.
        if let Some(weight) = block_io.weight().filter(|w| *w != 0) {
            write(dir, "io.weight", &format!("default {}", blkio_weight_to_io_weight(weight)?))?;
        }
        for device in block_io.weight_device().iter().flatten() {
            if let Some(weight) = device.weight().filter(|w| *w != 0) {
                write(dir, "io.weight", &format!("{}:{} {}", device.major(), device.minor(), blkio_weight_to_io_weight(weight)?))?;
            }
        }
        for (key, devices) in [
            ("rbps", block_io.throttle_read_bps_device()),
            ("wbps", block_io.throttle_write_bps_device()),
            ("riops", block_io.throttle_read_iops_device()),
            ("wiops", block_io.throttle_write_iops_device()),
        ] {
            for device in devices.iter().flatten() {
                write(dir, "io.max", &format!("{}:{} {key}={}", device.major(), device.minor(), device.rate()))?;
            }
        }
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let size = limit.page_size();
        if !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::InvalidResource("hugepageLimits.pageSize", size.clone()));
        }
        write(dir, &format!("hugetlb.{size}.max"), &limit.limit().to_string())?;
    }
    for line in crate::rdma::max_lines(resources)? {
        write(dir, "rdma.max", &line)?;
    }
    if resources.network().is_some() {
        return Err(Error::Unsupported("linux.resources.network (net_cls/net_prio) does not exist on cgroup v2".into()));
    }
    for (key, value) in resources.unified().iter().flatten() {
        check_unified_key(key)?;
        if value.contains('\n') {
            return Err(Error::InvalidResource("unified", format!("{key}: value contains a newline")));
        }
        write(dir, key, value).map_err(|e| match e {
            Error::Unsupported(_) => Error::InvalidResource("unified", format!("{key}: no such cgroup interface file (controller not enabled?)")),
            other => other,
        })?;
    }
    Ok(())
}

/// A unified key names one interface file of this cgroup, nothing else.
fn check_unified_key(key: &str) -> Result<()> {
    let reserved = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.kill", "cgroup.freeze", "cgroup.type"];
    if key.is_empty() || key.contains('/') || key.starts_with('.') || key.contains('\0') || reserved.contains(&key) {
        return Err(Error::InvalidResource("unified", format!("{key:?} is not a settable interface file")));
    }
    Ok(())
}

fn limit_or_max(field: &'static str, value: i64) -> Result<String> {
    match value {
        -1 => Ok("max".into()),
        v if v < 0 => Err(Error::InvalidResource(field, v.to_string())),
        v => Ok(v.to_string()),
    }
}

fn apply_memory(dir: &Path, memory: &LinuxMemory) -> Result<()> {
    crate::memory_check::check_before_update(dir, "memory.current", memory)?;
    if let Some(reservation) = memory.reservation() {
        write(dir, "memory.low", &limit_or_max("memory.reservation", reservation)?)?;
    }
    if let Some(swap) = memory.swap() {
        // The spec's swap is memory+swap (v1 memsw); v2 limits swap alone.
        let value = match (swap, memory.limit()) {
            (-1, _) => "max".to_string(),
            (swap, Some(limit)) if limit >= 0 && swap >= limit => (swap - limit).to_string(),
            (swap, Some(limit)) if limit >= 0 => return Err(Error::InvalidResource("memory.swap", format!("{swap} is below memory.limit {limit}"))),
            (swap, _) => limit_or_max("memory.swap", swap)?,
        };
        write(dir, "memory.swap.max", &value)?;
    }
    if let Some(limit) = memory.limit() {
        write(dir, "memory.max", &limit_or_max("memory.limit", limit)?)?;
    }
    if memory.swappiness().is_some() || memory.disable_oom_killer() == Some(true) || memory.kernel().is_some() || memory.kernel_tcp().is_some() {
        return Err(Error::Unsupported("memory.swappiness, disableOOMKiller, kernel and kernelTCP memory do not exist on cgroup v2".into()));
    }
    Ok(())
}

/// cpu.shares (2..262144) → cpu.weight (1..10000), the linear mapping runc uses.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// blkio.weight (10..1000) → io.weight (1..10000), as runc maps it.
fn blkio_weight_to_io_weight(weight: u16) -> Result<u64> {
    if !(10..=1000).contains(&weight) {
        return Err(Error::InvalidResource("blockIO.weight (10..1000)", weight.to_string()));
    }
    Ok(1 + (u64::from(weight) - 10) * 9999 / 990)
}

fn apply_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares() {
        write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
    }
    if cpu.quota().is_some() || cpu.period().is_some() {
        let quota = match cpu.quota() {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        write(dir, "cpu.max", &format!("{quota} {}", cpu.period().unwrap_or(100_000)))?;
    }
    if let Some(burst) = cpu.burst() {
        write(dir, "cpu.max.burst", &burst.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        write(dir, "cpu.idle", &idle.to_string())?;
    }
    if cpu.realtime_runtime().is_some() || cpu.realtime_period().is_some() {
        return Err(Error::Unsupported("realtime cpu limits do not exist on cgroup v2".into()));
    }
    for (file, value) in [("cpuset.cpus", cpu.cpus()), ("cpuset.mems", cpu.mems())] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            if !value.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-') {
                return Err(Error::InvalidResource("cpu.cpus/mems", value.to_string()));
            }
            write(dir, file, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10).unwrap(), 1);
        assert_eq!(blkio_weight_to_io_weight(1000).unwrap(), 10_000);
        assert!(blkio_weight_to_io_weight(5000).is_err());
    }

    #[test]
    fn unified_keys() {
        assert!(check_unified_key("memory.high").is_ok());
        for bad in ["", "../memory.max", "a/b", ".hidden", "cgroup.procs", "cgroup.subtree_control"] {
            assert!(check_unified_key(bad).is_err(), "{bad}");
        }
    }
}
