//! Idmapped bind mounts (`idmap`, `ridmap`): host files appear with the ids the mapping gives them,
//! and what the container writes lands on disk with the unmapped ids. Each case beside a plain
//! bind of the same directory, so the difference is the idmap's.

use berth_testsupport::TestEnv;
use serde_json::json;
use std::os::unix::fs::MetadataExt;

/// A host directory holding a file owned by root and one owned by 1000, both world-readable.
fn shared_dir(env: &TestEnv) -> std::path::PathBuf {
    let dir = env.dir.join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("by-root"), "r").unwrap();
    std::fs::write(dir.join("by-1000"), "u").unwrap();
    std::os::unix::fs::chown(dir.join("by-1000"), Some(1000), Some(1000)).unwrap();
    dir
}

fn run(env: &mut TestEnv, name: &str, mount: serde_json::Value) -> (bool, String, String) {
    env.bundle.edit(|c| c["mounts"].as_array_mut().unwrap().push(mount));
    let id = env.id(name);
    let out = env.oci(&["run", &id]);
    env.bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().pop();
    });
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_user_namespaced_container_owns_an_idmapped_bind() {
    let mut env = TestEnv::new("idmap-userns");
    let shared = shared_dir(&env);
    // The rootfs belongs to host root: the container's root could not make the mount point.
    std::fs::create_dir(env.bundle.dir.join("rootfs/shared")).unwrap();
    env.bundle.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["process"]["args"] =
            json!(["sh", "-c", "stat -c '%u %g' /shared/by-root /shared/by-1000; touch /shared/made-inside 2>/dev/null && echo touched; exit 0"]);
    });
    let bind = |options: &[&str]| json!({"destination": "/shared", "type": "bind", "source": shared, "options": options});

    // Plain bind: the host's ids mean nothing in the container's namespace, and root there may not write.
    let (ok, stdout, stderr) = run(&mut env, "plain", bind(&["bind"]));
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "65534 65534\n65534 65534\n");

    // idmap with the container's own mappings: host root's files are the container root's, and
    // the container's writes are host root's on disk.
    let (ok, stdout, stderr) = run(&mut env, "idmapped", bind(&["bind", "idmap"]));
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "0 0\n1000 1000\ntouched\n");
    let made = std::fs::metadata(shared.join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0));
    env.leak_check();
}

#[test]
fn a_mount_carries_its_own_mappings() {
    let mut env = TestEnv::new("idmap-own");
    let shared = shared_dir(&env);
    env.bundle.set_args(&["stat", "-c", "%u %g", "/shared/by-root", "/shared/by-1000"]);
    let mapping = json!([{"containerID": 0, "hostID": 4321, "size": 1}]);
    let mount = json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind", "ridmap", "ro"],
        "uidMappings": mapping, "gidMappings": mapping});
    let (ok, stdout, stderr) = run(&mut env, "own", mount);
    assert!(ok, "{stderr}");
    // Only id 0 is mapped: 1000 has no id through this mount.
    assert_eq!(stdout, "4321 4321\n65534 65534\n");
    env.leak_check();
}

#[test]
fn idmap_that_cannot_work_is_a_clear_error() {
    let mut env = TestEnv::new("idmap-bad");
    let shared = shared_dir(&env);
    env.bundle.set_args(&["true"]);
    let (ok, _, stderr) = run(&mut env, "nomap", json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["bind", "idmap"]}));
    assert!(!ok && stderr.contains("needs uidMappings and gidMappings"), "{stderr}");
    let (ok, _, stderr) = run(&mut env, "tmpfs", json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}));
    assert!(!ok && stderr.contains("only bind mounts"), "{stderr}");
    env.leak_check();
}
