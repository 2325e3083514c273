//! What a process's peak memory gains from a point on: VmHWM reset to the current RSS (writing 5
//! to /proc/<pid>/clear_refs), then read again. The tests of hostile input bound berthd with it.

/// A number field of /proc/<pid>/status (`Threads:`, or a size in KiB such as `VmHWM:`).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub struct PeakRss {
    pid: u32,
    before: u64,
}

impl PeakRss {
    /// Resets `pid`'s peak RSS to its RSS now.
    pub fn start(pid: u32) -> PeakRss {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        PeakRss { pid, before: proc_status(pid, "VmHWM:") }
    }

    /// KiB the peak grew by since [`PeakRss::start`].
    pub fn grown_kib(&self) -> u64 {
        proc_status(self.pid, "VmHWM:").saturating_sub(self.before)
    }
}
