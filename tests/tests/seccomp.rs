//! The default seccomp profile that `berth-oci spec` writes, seen from inside a container by a
//! probe that makes the syscalls itself (tests/probes/syscalls.c, built static here).

use berth_testsupport::TestEnv;
use serde_json::json;

/// Builds the probe into the bundle's rootfs as /probe.
fn install_probe(env: &TestEnv) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/syscalls.c");
    let target = env.bundle.dir.join("rootfs/probe");
    let out = std::process::Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&target).arg(&source).output().expect("gcc");
    assert!(out.status.success(), "building the probe: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `script` as an unprivileged user (nobody) in the container; returns its stdout.
fn run_as_nobody(env: &mut TestEnv, name: &str, script: &str) -> String {
    env.bundle.edit(|c| {
        c["process"]["user"] = json!({"uid": 65534, "gid": 65534});
        c["process"]["args"] = json!(["sh", "-c", script]);
    });
    let id = env.id(name);
    let out = env.oci(&["run", &id]);
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const PROBES: &str = "/probe keyctl bpf unshare-user clone-user clone3 clone-plain personality-query";

#[test]
fn default_profile_refuses_host_state_and_namespaces_and_runs_a_shell() {
    let mut env = TestEnv::new("seccomp-default");
    install_probe(&env);
    assert!(env.bundle.config["linux"]["seccomp"].is_object(), "berth-oci spec writes the default profile");

    let shell = "echo a | tr a b; ls / > /dev/null && sleep 0.1 & wait; id -u; date > /dev/null && echo done";
    let expected = "keyctl=EPERM\nbpf=EPERM\nunshare-user=EPERM\nclone-user=EPERM\nclone3=ENOSYS\nclone-plain=ok\npersonality-query=ok\nb\n65534\ndone\n";
    assert_eq!(run_as_nobody(&mut env, "filtered", &format!("{PROBES}; {shell}")), expected);
    // The compiled program was cached under the state root; the next container loads it from there.
    let cached: Vec<_> = std::fs::read_dir(env.root.join("@seccomp")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(run_as_nobody(&mut env, "cached", &format!("{PROBES}; {shell}")), expected);

    // The same probes without a filter: the kernel itself would have allowed what the profile
    // refused, so the refusals above are the profile's.
    env.bundle.edit(|c| c["linux"]["seccomp"] = json!(null));
    let out = run_as_nobody(&mut env, "unfiltered", "/probe keyctl clone-user clone3 unshare-user");
    // (unshare last: afterwards the probe is in a user namespace without mappings.)
    assert_eq!(out, "keyctl=ok\nclone-user=ok\nclone3=ok\nunshare-user=ok\n");
    std::fs::remove_file(env.bundle.dir.join("rootfs/probe")).unwrap();
    env.leak_check();
}
