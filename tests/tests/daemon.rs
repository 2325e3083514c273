//! berthd and the `berth` CLI end to end: pull from a private docker-registry, list, remove,
//! prune; kill -9 of berthd during a pull, restart, pull again, no orphans; clear errors.

use berth_testsupport::{busybox_registry, wait_for_partial_blob, workspace_bin, Berthd, Fault, FaultyProxy, TestEnv};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn images(berthd: &Berthd, env: &TestEnv) -> Vec<serde_json::Value> {
    serde_json::from_str(&berthd.ok(env, &["images", "--format", "json"])).unwrap()
}

#[test]
fn pull_list_remove_and_prune_through_berthd() {
    let env = TestEnv::new("berthd");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    assert_eq!(std::fs::metadata(berthd.socket.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700, "socket dir 0700");
    let name = format!("{}/test/busybox:v1", registry.address);
    let out = berthd.ok(&env, &["pull", &name]);
    assert!(out.contains(&name) && out.contains("bytes downloaded"), "{out}");
    let listed = images(&berthd, &env);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], name.as_str());
    let (repository, tag) = name.rsplit_once(':').unwrap();
    assert!(berthd.ok(&env, &["images"]).lines().any(|l| l.split_whitespace().take(2).eq([repository, tag])), "table");
    let again = berthd.ok(&env, &["pull", &name]);
    assert!(again.contains("(0 bytes downloaded)"), "{again}");

    berthd.ok(&env, &["rmi", &name]);
    assert!(images(&berthd, &env).is_empty());
    let pruned = berthd.ok(&env, &["prune"]);
    assert!(pruned.starts_with("removed 3 blobs and 1 snapshots"), "{pruned}");

    // Bad input: clear errors from berthd, exit status 1.
    for (args, expected) in [
        (vec!["pull", "Not A Reference"], "invalid image reference"),
        (vec!["rmi", "nothing/here:1"], "no such image"),
        (vec!["pull", &format!("{}/no/such:1", registry.address)][..].to_vec(), "registry"),
    ] {
        let out = berthd.berth(&env, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(expected), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let socket = berthd.socket.clone();
    berthd.stop();
    assert!(!socket.exists(), "a graceful stop removes the socket");
    let out = env.capture(Command::new(workspace_bin("berth")).arg("--socket").arg(&socket).arg("images"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it running?"));
    env.leak_check();
}

#[test]
fn berthd_killed_during_a_pull_restarts_and_pulls_again_without_orphans() {
    let env = TestEnv::new("berthd-kill");
    let registry = busybox_registry(&env);
    let proxy = FaultyProxy::start(&registry.address, Fault::Slow);
    let mut berthd = Berthd::start(&env, &[&registry.address, &proxy.address]);
    let slow_name = format!("{}/test/busybox:v1", proxy.address);
    let mut client = Command::new(workspace_bin("berth"))
        .arg("--socket")
        .arg(&berthd.socket)
        .args(["pull", &slow_name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ingest = berthd.root.join("content/ingest");
    wait_for_partial_blob(&ingest);
    berthd.child.kill().unwrap();
    berthd.child.wait().unwrap();
    assert!(!client.wait().unwrap().success(), "the client sees the daemon die");
    drop(berthd);

    let berthd = Berthd::start(&env, &[&registry.address, &proxy.address]);
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0, "restart recovered the half-written blob");
    let name = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &name]);
    let listed = images(&berthd, &env);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(berthd.ok(&env, &["prune"]).starts_with("removed 0 blobs and 0 snapshots"), "no orphans");
    berthd.ok(&env, &["rmi", &name]);
    assert!(berthd.ok(&env, &["prune"]).starts_with("removed 3 blobs and 1 snapshots"));
    berthd.stop();
    env.leak_check();
}

#[test]
fn tag_inspect_export_import_rootfs_and_df_through_berthd() {
    let env = TestEnv::new("berthd-archives");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let name = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &name]);
    berthd.ok(&env, &["tag", &name, "localhost/mine:1"]);
    let inspected = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "localhost/mine:1"])).unwrap()[0].clone();
    assert_eq!(inspected["name"], "localhost/mine:1");
    assert_eq!(inspected["config"]["os"], "linux");
    let manifest = inspected["manifest"].as_str().unwrap().to_string();

    // Out as an OCI layout, everything removed, back in: the same image.
    let archive = env.dir.join("out.tar");
    berthd.ok(&env, &["save", "localhost/mine:1", "-o", archive.to_str().unwrap()]);
    let out = berthd.berth(&env, &["export", "localhost/mine:1", "-o", archive.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("exists"), "an existing file is never overwritten");
    berthd.ok(&env, &["rmi", &name]);
    berthd.ok(&env, &["rmi", "localhost/mine:1"]);
    berthd.ok(&env, &["prune"]);
    let loaded = berthd.ok(&env, &["load", archive.to_str().unwrap()]);
    assert_eq!(loaded.trim(), format!("localhost/mine:1 {manifest}"));

    // As a docker archive: skopeo (an independent reader) sees the image, its uncompressed layer
    // and its name; loaded back, it is the same image (same config).
    let docker = env.dir.join("docker.tar");
    berthd.ok(&env, &["save", "--format", "docker-archive", "localhost/mine:1", "-o", docker.to_str().unwrap()]);
    let out = Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", docker.display())]).output().unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config_file = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "localhost/mine:1"])).unwrap()[0].clone();
    assert_eq!(seen["Layers"], config_file["config"]["rootfs"]["diff_ids"], "{seen}");
    berthd.ok(&env, &["rmi", "localhost/mine:1"]);
    let loaded = berthd.ok(&env, &["load", docker.to_str().unwrap()]);
    assert!(loaded.starts_with("localhost/mine:1 "), "{loaded}");
    let reloaded = serde_json::from_str::<serde_json::Value>(&berthd.ok(&env, &["inspect", "localhost/mine:1"])).unwrap()[0].clone();
    assert_eq!(reloaded["config"]["rootfs"], config_file["config"]["rootfs"]);
    // (The archive had no manifest or compressed layer: the earlier ones are now unreferenced.)
    assert!(berthd.ok(&env, &["prune"]).starts_with("removed 2 blobs and 0 snapshots"));

    // A rootfs tarball as a one-layer image (the README's offline quickstart).
    let rootfs_tar = env.dir.join("rootfs.tar");
    std::fs::write(&rootfs_tar, berth_testsupport::tar_of(&env.bundle.dir.join("rootfs"))).unwrap();
    let out = berthd.berth(&env, &["import", "--rootfs", rootfs_tar.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a name"));
    berthd.ok(&env, &["import", "--rootfs", rootfs_tar.to_str().unwrap(), "localhost/busybox:rootfs"]);
    let df = berthd.ok(&env, &["df"]);
    // Two manifests, two configs, one layer: the rootfs tarball is the very tar the docker
    // archive carried uncompressed, so both images share it (and its snapshot).
    assert!(df.starts_with("images 2\nblobs 5 (") && df.contains("snapshots 1 "), "{df}");
    berthd.stop();
    env.leak_check();
}

#[test]
fn credentials_come_from_the_config_a_docker_config_or_a_helper() {
    let env = TestEnv::new("berthd-auth");
    let registry = berth_testsupport::Registry::start_with_auth(&env.dir, "berth", "s3cret");
    registry.push(&berth_testsupport::busybox_layout(&env, "v1"), "v1", "private/busybox");
    let name = format!("{}/private/busybox:v1", registry.address);

    let berthd = Berthd::start(&env, &[&registry.address]);
    let out = berthd.berth(&env, &["pull", &name]);
    assert!(!out.status.success(), "no credentials, no image");
    berthd.stop();

    // berthd.toml's own table.
    let own = format!("[auth.{:?}]\nusername = \"berth\"\npassword = \"s3cret\"\n", registry.address);
    let berthd = Berthd::start_with(&env, &[&registry.address], &own, None);
    berthd.ok(&env, &["pull", &name]);
    // Pushing takes the same credentials.
    let pushed = format!("{}/private/pushed:v1", registry.address);
    berthd.ok(&env, &["tag", &name, &pushed]);
    berthd.ok(&env, &["push", &pushed]);
    berthd.ok(&env, &["rmi", &pushed]);
    berthd.ok(&env, &["rmi", &name]);
    berthd.stop();

    // A docker config.json with a base64 auth ("berth:s3cret"), read at pull time.
    let docker_config = env.dir.join("docker-config.json");
    std::fs::write(&docker_config, format!(r#"{{"auths": {{"{}": {{"auth": "YmVydGg6czNjcmV0"}}}}}}"#, registry.address)).unwrap();
    let berthd = Berthd::start_with(&env, &[&registry.address], &format!("docker_config = {docker_config:?}\n"), None);
    berthd.ok(&env, &["pull", &name]);
    berthd.ok(&env, &["rmi", &name]);

    // A credential helper named by credHelpers, found on berthd's PATH.
    let helpers = env.dir.join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    let helper = helpers.join("docker-credential-berthtest");
    std::fs::write(&helper, "#!/bin/sh\nread registry\necho '{\"Username\": \"berth\", \"Secret\": \"s3cret\"}'\n").unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&docker_config, format!(r#"{{"credHelpers": {{"{}": "berthtest"}}}}"#, registry.address)).unwrap();
    berthd.stop();
    let berthd = Berthd::start_with(&env, &[&registry.address], &format!("docker_config = {docker_config:?}\n"), Some(&helpers));
    berthd.ok(&env, &["pull", &name]);
    assert_eq!(images(&berthd, &env).len(), 1);
    berthd.stop();
    env.leak_check();
}

#[test]
fn mirrors_are_tried_first_and_the_registry_after_them() {
    let env = TestEnv::new("berthd-mirrors");
    let origin = busybox_registry(&env);
    let mirror_dir = env.dir.join("mirror");
    std::fs::create_dir(&mirror_dir).unwrap();
    let mirror = berth_testsupport::Registry::start(&mirror_dir);
    mirror.push(&env.dir.join("layout"), "v1", "test/busybox");
    // A registry nobody listens on, mirrored: the image comes from the mirror, under its own name.
    let dead = "127.0.0.1:9";
    let config = format!("[mirrors]\n{dead:?} = [\"127.0.0.1:1\", {:?}]\n{:?} = [\"127.0.0.1:1\"]\n", mirror.address, origin.address);
    let berthd = Berthd::start_with(&env, &[dead, &mirror.address, &origin.address, "127.0.0.1:1"], &config, None);
    let name = format!("{dead}/test/busybox:v1");
    berthd.ok(&env, &["pull", &name]);
    assert_eq!(images(&berthd, &env)[0]["name"], name.as_str());
    // A mirror that cannot serve: the registry itself is asked next.
    let from_origin = format!("{}/test/busybox:v1", origin.address);
    berthd.ok(&env, &["pull", &from_origin]);
    assert_eq!(images(&berthd, &env).len(), 2);
    // Mirrors that fail and a registry that fails: the registry's error is the one told.
    let out = berthd.berth(&env, &["pull", &format!("{dead}/test/nosuch:v1")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains(dead), "{}", String::from_utf8_lossy(&out.stderr));
    berthd.stop();
    env.leak_check();
}

#[test]
fn push_to_another_registry_and_pull_back_the_same_image() {
    let env = TestEnv::new("berthd-push");
    let origin = busybox_registry(&env);
    let target_dir = env.dir.join("target-registry");
    std::fs::create_dir(&target_dir).unwrap();
    let target = berth_testsupport::Registry::start(&target_dir);
    let berthd = Berthd::start(&env, &[&origin.address, &target.address]);
    let name = format!("{}/test/busybox:v1", origin.address);
    let copy = format!("{}/copy/busybox:v2", target.address);
    berthd.ok(&env, &["pull", &name]);
    let manifest = images(&berthd, &env)[0]["manifest"].as_str().unwrap().to_string();
    berthd.ok(&env, &["tag", &name, &copy]);
    assert_eq!(berthd.ok(&env, &["push", &copy]).trim(), format!("{copy} {manifest}"));
    // The registry serves the very manifest (skopeo, an independent client, says so).
    let out = Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{copy}")]).output().unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["Digest"], manifest.as_str());
    // Pushed again: every blob is there already, nothing is sent twice, same answer.
    assert_eq!(berthd.ok(&env, &["push", &copy]).trim(), format!("{copy} {manifest}"));
    // Gone from the store, pulled back from where it was pushed: the same tree.
    berthd.ok(&env, &["rmi", &name]);
    berthd.ok(&env, &["rmi", &copy]);
    berthd.ok(&env, &["prune"]);
    berthd.ok(&env, &["pull", &copy]);
    let snapshots: Vec<std::path::PathBuf> =
        std::fs::read_dir(berthd.root.join("snapshots")).unwrap().flatten().map(|e| e.path().join("fs")).filter(|p| p.is_dir()).collect();
    assert_eq!(snapshots.len(), 1);
    berth_testsupport::assert_same_tree(&env.bundle.dir.join("rootfs"), &snapshots[0]);
    // An image the store does not have: a clear error.
    let out = berthd.berth(&env, &["push", &format!("{}/copy/nosuch:v1", target.address)]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such image"), "{}", String::from_utf8_lossy(&out.stderr));
    berthd.stop();
    env.leak_check();
}
