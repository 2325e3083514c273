//! Writing runtime-spec `linux.resources` to v1 controller files.

use super::{devices, write, V1Cgroup};
use crate::{Error, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use std::path::Path;

pub(super) fn apply(cgroup: &V1Cgroup, resources: &LinuxResources) -> Result<()> {
    if let Some(memory) = resources.memory() {
        apply_memory(require(cgroup, "memory")?, memory)?;
    }
    if let Some(cpu) = resources.cpu() {
        apply_cpu(cgroup, cpu)?;
    }
    if let Some(pids) = resources.pids() {
        let limit = if pids.limit() > 0 { pids.limit().to_string() } else { "max".to_string() };
        write(require(cgroup, "pids")?, "pids.max", &limit)?;
    }
    if let Some(block_io) = resources.block_io() {
        apply_block_io(require(cgroup, "blkio")?, block_io)?;
    }
    if let Some(limits) = resources.hugepage_limits() {
        for limit in limits {
            let size = limit.page_size();
            if !size.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Error::InvalidResource("hugepageLimits.pageSize", size.clone()));
            }
            write(require(cgroup, "hugetlb")?, &format!("hugetlb.{size}.limit_in_bytes"), &limit.limit().to_string())?;
        }
    }
    if let Some(network) = resources.network() {
        if let Some(class_id) = network.class_id() {
            write(require(cgroup, "net_cls")?, "net_cls.classid", &class_id.to_string())?;
        }
        for priority in network.priorities().iter().flatten() {
            let name = priority.name();
            if name.is_empty() || name.contains(['/', ' ', '\n']) {
                return Err(Error::InvalidResource("network.priorities.name", name.clone()));
            }
            write(require(cgroup, "net_prio")?, "net_prio.ifpriomap", &format!("{name} {}", priority.priority()))?;
        }
    }
    for line in crate::rdma::max_lines(resources)? {
        write(require(cgroup, "rdma")?, "rdma.max", &line)?;
    }
    if let Some(unified) = resources.unified() {
        if !unified.is_empty() {
            return Err(Error::Unsupported("linux.resources.unified needs cgroup v2".into()));
        }
    }
    if let (Some(dir), Some(rules)) = (cgroup.dir("devices"), resources.devices()) {
        crate::devices::frozen_while(cgroup, || devices::apply(dir, rules))?;
    }
    Ok(())
}

fn require<'a>(cgroup: &'a V1Cgroup, controller: &'static str) -> Result<&'a Path> {
    cgroup.dir(controller).ok_or_else(|| Error::Unsupported(format!("the {controller} controller is not mounted on this host")))
}

/// -1 means "unlimited" in the spec and in v1 files; anything below that is nonsense.
fn limit_value(field: &'static str, value: i64) -> Result<String> {
    match value {
        -1 => Ok("-1".into()),
        v if v < 0 => Err(Error::InvalidResource(field, v.to_string())),
        v => Ok(v.to_string()),
    }
}

fn apply_memory(dir: &Path, memory: &LinuxMemory) -> Result<()> {
    crate::memory_check::check_before_update(dir, "memory.usage_in_bytes", memory)?;
    if let Some(reservation) = memory.reservation() {
        write(dir, "memory.soft_limit_in_bytes", &limit_value("memory.reservation", reservation)?)?;
    }
    let limit = memory.limit().map(|v| limit_value("memory.limit", v)).transpose()?;
    let swap = memory.swap().map(|v| limit_value("memory.swap", v)).transpose()?;
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    match (limit, swap) {
        (Some(limit), Some(swap)) if has_memsw => {
            // memsw must stay >= limit at every step: raise memsw first when growing, last when shrinking.
            if write(dir, "memory.limit_in_bytes", &limit).is_err() {
                write(dir, "memory.memsw.limit_in_bytes", &swap)?;
                write(dir, "memory.limit_in_bytes", &limit)?;
            } else {
                write(dir, "memory.memsw.limit_in_bytes", &swap)?;
            }
        }
        (Some(limit), _) => write(dir, "memory.limit_in_bytes", &limit)?,
        (None, Some(swap)) if has_memsw => write(dir, "memory.memsw.limit_in_bytes", &swap)?,
        _ => {}
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(Error::InvalidResource("memory.swappiness", swappiness.to_string()));
        }
        write(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if let Some(disable) = memory.disable_oom_killer() {
        write(dir, "memory.oom_control", if disable { "1" } else { "0" })?;
    }
    // (`kernel`, memory.kmem.limit_in_bytes, is left alone as runc leaves it: kernels since 5.16
    // take the write and ignore it, and older ones could fail the tasks already charged.)
    // 0 would be a TCP buffer limit of nothing: unset, as runc reads it.
    if let Some(tcp) = memory.kernel_tcp().filter(|t| *t != 0) {
        write(dir, "memory.kmem.tcp.limit_in_bytes", &limit_value("memory.kernelTCP", tcp)?)?;
    }
    Ok(())
}

fn apply_cpu(cgroup: &V1Cgroup, cpu: &LinuxCpu) -> Result<()> {
    let needs_cpu = cpu.shares().is_some()
        || cpu.quota().is_some()
        || cpu.period().is_some()
        || cpu.burst().is_some()
        || cpu.realtime_period().is_some()
        || cpu.realtime_runtime().is_some()
        || cpu.idle().is_some();
    if needs_cpu {
        let dir = require(cgroup, "cpu")?;
        if let Some(shares) = cpu.shares() {
            write(dir, "cpu.shares", &shares.to_string())?;
        }
        // The kernel checks quota against the current period, so set the period first.
        if let Some(period) = cpu.period() {
            write(dir, "cpu.cfs_period_us", &period.to_string())?;
        }
        if let Some(quota) = cpu.quota() {
            write(dir, "cpu.cfs_quota_us", &if quota > 0 { quota.to_string() } else { "-1".into() })?;
        }
        if let Some(burst) = cpu.burst() {
            write(dir, "cpu.cfs_burst_us", &burst.to_string())?;
        }
        if let Some(period) = cpu.realtime_period() {
            write(dir, "cpu.rt_period_us", &period.to_string())?;
        }
        if let Some(runtime) = cpu.realtime_runtime() {
            write(dir, "cpu.rt_runtime_us", &runtime.to_string())?;
        }
        if let Some(idle) = cpu.idle() {
            write(dir, "cpu.idle", &idle.to_string())?;
        }
    }
    for (file, value) in [("cpuset.cpus", cpu.cpus()), ("cpuset.mems", cpu.mems())] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            if !value.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '-') {
                return Err(Error::InvalidResource("cpu.cpus/mems", value.to_string()));
            }
            write(require(cgroup, "cpuset")?, file, value)?;
        }
    }
    Ok(())
}

fn apply_block_io(dir: &Path, block_io: &LinuxBlockIo) -> Result<()> {
    if let Some(weight) = block_io.weight() {
        write(dir, weight_file(dir, "weight"), &weight.to_string())?;
    }
    if let Some(weight) = block_io.leaf_weight() {
        write(dir, "blkio.leaf_weight", &weight.to_string())?;
    }
    for device in block_io.weight_device().iter().flatten() {
        if let Some(weight) = device.weight() {
            write(dir, weight_file(dir, "weight_device"), &format!("{}:{} {weight}", device.major(), device.minor()))?;
        }
        if let Some(weight) = device.leaf_weight() {
            write(dir, "blkio.leaf_weight_device", &format!("{}:{} {weight}", device.major(), device.minor()))?;
        }
    }
    for (file, devices) in [
        ("blkio.throttle.read_bps_device", block_io.throttle_read_bps_device()),
        ("blkio.throttle.write_bps_device", block_io.throttle_write_bps_device()),
        ("blkio.throttle.read_iops_device", block_io.throttle_read_iops_device()),
        ("blkio.throttle.write_iops_device", block_io.throttle_write_iops_device()),
    ] {
        for device in devices.iter().flatten() {
            write(dir, file, &format!("{}:{} {}", device.major(), device.minor(), device.rate()))?;
        }
    }
    Ok(())
}

/// CFQ exposes blkio.weight; BFQ kernels expose blkio.bfq.weight instead.
fn weight_file(dir: &Path, name: &str) -> &'static str {
    match (name, dir.join("blkio.weight").exists()) {
        ("weight", true) => "blkio.weight",
        ("weight", false) => "blkio.bfq.weight",
        (_, true) => "blkio.weight_device",
        (_, false) => "blkio.bfq.weight_device",
    }
}
