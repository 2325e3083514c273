//! berthd at scale: 500 containers running under one berthd. berthd's threads stay few (no thread
//! per container: exits are pushed by the shims), `ps` answers from memory, an exit is recorded
//! within a second of `kill -9` of a container's process, and removing all 500 leaves nothing.
//! Figures (threads, list time, RSS per container) are printed for the record; the benchmark in
//! bench/containers.py is where they are compared with containerd.

use berth_testsupport::{busybox_registry, workspace_bin, Berthd, TestEnv};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONTAINERS: usize = 500;

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

fn list(berthd: &Berthd, env: &TestEnv) -> Vec<serde_json::Value> {
    serde_json::from_str(&berthd.ok(env, &["ps", "-a", "--format", "json"])).unwrap()
}

#[test]
fn five_hundred_containers_under_one_berthd() {
    let env = TestEnv::new("scale");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    let pid = berthd.child.id();
    let rss_before = proc_status(pid, "VmRSS:");

    // Four clients at a time, as a busy node would create them.
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (socket, image) = (berthd.socket.clone(), image.clone());
            std::thread::spawn(move || {
                for i in (w..CONTAINERS).step_by(4) {
                    let out = Command::new(workspace_bin("berth"))
                        .arg("--socket")
                        .arg(&socket)
                        .args(["run", "-d", "--name", &format!("s{i}"), &image, "sleep", "100000"])
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "run s{i}: {}", String::from_utf8_lossy(&out.stderr));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    eprintln!("scale: {CONTAINERS} containers started in {:?}", started.elapsed());

    let threads = proc_status(pid, "Threads:");
    assert!(threads < 50, "berthd has {threads} threads with {CONTAINERS} containers running");
    let mut times = Vec::new();
    for _ in 0..5 {
        let at = Instant::now();
        let listed = list(&berthd, &env);
        times.push(at.elapsed());
        assert_eq!(listed.iter().filter(|c| c["state"] == "running").count(), CONTAINERS);
    }
    times.sort();
    let rss = proc_status(pid, "VmRSS:");
    eprintln!(
        "scale: berthd threads {threads}, `berth ps -a` (CLI process included) median {:?}, berthd RSS {} KiB -> {} KiB ({} KiB per container)",
        times[2],
        rss_before,
        rss,
        rss.saturating_sub(rss_before) / CONTAINERS as u64
    );

    // kill -9 of containers' processes, 25 at a time: each exit is in berthd's list within 1 s.
    let listed = list(&berthd, &env);
    let victims: Vec<(String, i32)> =
        listed.iter().take(100).map(|c| (c["name"].as_str().unwrap().to_string(), c["pid"].as_i64().unwrap() as i32)).collect();
    for batch in victims.chunks(25) {
        let killed = Instant::now();
        for (_, pid) in batch {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        loop {
            let now = list(&berthd, &env);
            let recorded = batch
                .iter()
                .filter(|(name, _)| now.iter().any(|c| c["name"] == name.as_str() && c["state"] == "exited" && c["exit_code"] == 137))
                .count();
            if recorded == batch.len() {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(1), "{recorded} of {} exits recorded 1 s after kill -9", batch.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // Everything goes, in one command; nothing is left.
    let names: Vec<String> = (0..CONTAINERS).map(|i| format!("s{i}")).collect();
    let ids: Vec<String> = listed.iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    let removed = Instant::now();
    berthd.ok(&env, &args);
    eprintln!("scale: rm -f of {CONTAINERS} in {:?}", removed.elapsed());
    assert!(list(&berthd, &env).is_empty());
    for dir in [berthd.state.join("containers"), berthd.root.join("containers")] {
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).filter(|n| n != "containers.redb").collect();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
    let mut roots = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    roots.extend(std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten().map(|c| c.path()));
    let cgroups: Vec<_> = roots.iter().flat_map(|root| ids.iter().map(move |id| root.join("berth").join(id))).filter(|p| p.exists()).collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    berthd.stop();
    env.leak_check();
}
