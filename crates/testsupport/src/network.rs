//! Network state a CNI test makes on the host, and the proof it is gone: [`NetNs`] pins a network
//! namespace under the test's directory; [`HostNetwork`] snapshots the host's iptables and
//! ip6tables rules and forwarding switches before the test, then after it lists what the test's attachments left (veths
//! on its bridge, rules naming its container ids, host-local allocations) and takes away the
//! shared plumbing plugins make once per host and never remove (the bridge, portmap's top-level
//! chains and the jumps to them, forwarding), so the host is as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace pinned at a file (a bind mount of the namespace), loopback up.
pub struct NetNs {
    pub path: PathBuf,
}

impl NetNs {
    pub fn new(path: &Path) -> NetNs {
        std::fs::write(path, b"").expect("create the netns pin file");
        let pin = path.to_str().expect("a UTF-8 path");
        run(&["unshare", &format!("--net={pin}"), "true"]);
        let ns = NetNs { path: path.to_path_buf() };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside; its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["nsenter", "--net"];
        let net = format!("--net={}", self.path.display());
        all[1] = &net;
        all.extend_from_slice(args);
        run(&all)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.path.display())).args(args);
        command
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An address family's packet filter: its save tool, its tool, its forwarding switch.
struct Family {
    save: &'static str,
    tool: &'static str,
    forwarding: &'static str,
}

const FAMILIES: [Family; 2] = [
    Family { save: "iptables-save", tool: "iptables", forwarding: "/proc/sys/net/ipv4/ip_forward" },
    Family { save: "ip6tables-save", tool: "ip6tables", forwarding: "/proc/sys/net/ipv6/conf/all/forwarding" },
];

impl Family {
    /// The host's rules (every table) without counters, one rule or chain a line.
    fn lines(&self) -> Vec<String> {
        run(&[self.save])
            .lines()
            .filter(|l| l.starts_with('-') || l.starts_with(':') || l.starts_with('*'))
            .map(|l| {
                // ":CHAIN POLICY [packets:bytes]" → ":CHAIN POLICY"
                match l.strip_prefix(':') {
                    Some(chain) => format!(":{}", chain.split(" [").next().unwrap_or(chain)),
                    None => l.to_string(),
                }
            })
            .collect()
    }

    /// Deletes what is in `now` and not in `before`: new rules first (jumps into new chains),
    /// then the new chains.
    fn restore(&self, before: &[String], now: &[String]) {
        let mut table = String::new();
        for line in now {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if line.starts_with("-A ") && !before.contains(line) {
                let _ = Command::new(self.tool).args(["-t", &table, "-D"]).args(shell_words(&line[3..])).status();
            }
        }
        for line in now {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(chain) = line.strip_prefix(':').filter(|_| !before.contains(line)) {
                let name = chain.split_whitespace().next().unwrap_or_default();
                let _ = Command::new(self.tool).args(["-t", &table, "-F", name]).status();
                let _ = Command::new(self.tool).args(["-t", &table, "-X", name]).status();
            }
        }
    }
}

/// One test at a time changes the host's network: a snapshot taken while another test's plugins
/// make the shared chains would have its restore delete them under that test.
static HOST_NETWORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct HostNetwork {
    /// Per family ([`FAMILIES`]): the rules, and the forwarding switch.
    rules: [Vec<String>; 2],
    forwarding: [String; 2],
    /// Held from the snapshot until the test drops this.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl HostNetwork {
    pub fn snapshot() -> HostNetwork {
        let turn = HOST_NETWORK.lock().unwrap_or_else(|e| e.into_inner());
        HostNetwork {
            rules: FAMILIES.each_ref().map(Family::lines),
            forwarding: FAMILIES.each_ref().map(|f| std::fs::read_to_string(f.forwarding).unwrap_or_default()),
            _turn: turn,
        }
    }

    /// What the attachments of `ids` left on `bridge` and in `ipam_dir` (host-local's dataDir):
    /// call after every DEL. Then restores the host (see the module doc) whatever it found.
    pub fn leaks_then_restore(&self, bridge: &str, ipam_dir: &Path, ids: &[String]) -> Vec<String> {
        let mut leaks = Vec::new();
        for line in run(&["ip", "-o", "link", "show"]).lines() {
            if line.contains(&format!(" master {bridge} ")) {
                leaks.push(format!("veth on {bridge}: {line}"));
            }
        }
        leaks.extend(ip_allocations(ipam_dir).into_iter().map(|file| format!("IP allocation: {}", file.display())));
        for (family, before) in FAMILIES.iter().zip(&self.rules) {
            let now = family.lines();
            for line in now.iter().filter(|line| ids.iter().any(|id| line.contains(id.as_str()))) {
                leaks.push(format!("{} rule: {line}", family.tool));
            }
            family.restore(before, &now);
        }
        let _ = Command::new("ip").args(["link", "del", bridge]).stderr(std::process::Stdio::null()).status();
        for (family, value) in FAMILIES.iter().zip(&self.forwarding) {
            let _ = std::fs::write(family.forwarding, value);
        }
        // A table first used by the test keeps its built-in chains (empty, policy ACCEPT).
        let builtin = |l: &str| ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "FORWARD"].iter().any(|c| l == format!(":{c} ACCEPT"));
        for (family, before) in FAMILIES.iter().zip(&self.rules) {
            for line in family.lines().iter().filter(|l| !before.contains(l) && !l.starts_with('*') && !builtin(l)) {
                leaks.push(format!("{} not restored: {line}", family.tool));
            }
        }
        leaks
    }
}

/// The addresses host-local holds in `ipam_dir` (its dataDir: a directory per network, a file per
/// address besides its `lock` and `last_reserved_ip.*`).
pub fn ip_allocations(ipam_dir: &Path) -> Vec<PathBuf> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir(ipam_dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                held.push(file.path());
            }
        }
    }
    held
}

/// iptables-save's quoting: words, with "double quoted" ones (comments, `\"` inside) whole.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => word.extend(chars.next()),
                    '"' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek().filter(|c| **c != ' ') {
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}
