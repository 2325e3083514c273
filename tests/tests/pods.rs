//! Pods through the containers library (what the CRI stands on): a pod's containers share one
//! shim; one of them dying leaves the others and the shim running; removing the pod removes them
//! all, and the shim ends with its last container. Also: the records (containers and pods) live in
//! the image store's database and come back when the library is opened again. Real containers from
//! an image pulled from a private registry; the leak check at the end.

use berth_containers::shim_launcher::{shim_pid, Binaries};
use berth_containers::{Containers, CreateOptions, Paths, SandboxConfig, State};
use berth_testsupport::{berth_oci_bin, busybox_registry, workspace_bin, Berthd, TestEnv};
use std::sync::Arc;
use std::time::Duration;

fn open(berthd_root: &std::path::Path, state: &std::path::Path) -> Containers {
    // The database is one process's at a time: a library shut down lets go of it as its last
    // task and its writer thread end, a moment later.
    let mut tries = 0;
    let store = loop {
        match berth_image::Store::open(berthd_root) {
            Ok(store) => break Arc::new(store),
            Err(e) if tries < 250 && e.to_string().contains("already open") => tries += 1,
            Err(e) => panic!("open the store: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let binaries = Binaries {
        shim: workspace_bin("berth-shim"),
        runtimes: [("berth-oci".to_string(), berth_oci_bin())].into_iter().collect(),
        default_runtime: "berth-oci".into(),
    };
    let paths = Paths {
        data: berthd_root.join("containers"),
        state: state.join("containers"),
        runtime_root: state.join("runtime"),
        volumes: berthd_root.join("volumes"),
    };
    Containers::open(store, paths, binaries, 1 << 20).unwrap()
}

/// berth-shim processes serving `dir`.
fn shims_of(dir: &std::path::Path) -> usize {
    let needle = dir.as_os_str().as_encoded_bytes().to_vec();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmd| cmd.starts_with(workspace_bin("berth-shim").as_os_str().as_encoded_bytes()) && cmd.windows(needle.len()).any(|w| w == needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_containers_share_one_shim_and_go_with_the_pod() {
    let env = TestEnv::new("pods");
    let registry = busybox_registry(&env);
    let berthd = Berthd::start(&env, &[&registry.address]);
    let image = format!("{}/test/busybox:v1", registry.address);
    berthd.ok(&env, &["pull", &image]);
    let (root, state) = (berthd.root.clone(), berthd.state.clone());
    berthd.stop();

    let containers = open(&root, &state);
    let pod = containers
        .create_sandbox(SandboxConfig { name: "web".into(), namespace: "default".into(), uid: "u1".into(), ..Default::default() })
        .await
        .unwrap();
    let twin =
        containers.create_sandbox(SandboxConfig { name: "web".into(), namespace: "default".into(), uid: "u1".into(), ..Default::default() }).await;
    assert!(twin.is_err(), "one pod per name, namespace, uid and attempt");

    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let options = CreateOptions {
            image: image.clone(),
            name: Some(name.into()),
            args: vec!["sleep".into(), "1000".into()],
            sandbox: Some(pod.id.clone()),
            ..Default::default()
        };
        let record = containers.create(options).await.unwrap();
        assert_eq!((record.shim.as_str(), record.sandbox.as_deref()), (pod.id.as_str(), Some(pod.id.as_str())));
        containers.start(&record.id).await.unwrap();
        ids.push(record.id);
    }
    let shim_dir = containers.shim_dir(&pod.id);
    assert_eq!(shims_of(&shim_dir), 1, "one shim for the pod's three containers");

    // b dies: a and c and the shim live on.
    let b = containers.kill(&ids[1], libc::SIGKILL, true).await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), containers.wait(&b.id)).await.expect("b's exit within 10 s").unwrap();
    assert_eq!((b.state, b.exit_code), (State::Exited, Some(137)));
    for id in [&ids[0], &ids[2]] {
        assert_eq!(containers.find(id).unwrap().state, State::Running);
    }
    assert!(shim_pid(&shim_dir).is_some(), "the shim supervises the others still");

    // The records are in the image store's database: a fresh library finds the pod and its
    // containers as they are.
    containers.shutdown().await;
    let containers = open(&root, &state);
    assert_eq!(containers.recover().await.unwrap().running, 2);
    assert_eq!(containers.list_sandboxes().iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [pod.id.as_str()]);
    assert_eq!(containers.find("b").unwrap().state, State::Exited);
    assert!(!root.join("containers/containers.redb").exists());

    containers.remove_sandbox(&pod.id).await.unwrap();
    assert!(containers.list().is_empty() && containers.list_sandboxes().is_empty());
    for _ in 0..200 {
        if shims_of(&shim_dir) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shims_of(&shim_dir), 0, "the shim ends with the pod's last container");
    assert!(!state.join("containers").join(&pod.id).exists());
    let left: Vec<_> = std::fs::read_dir(state.join("containers")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "left: {left:?}");
    containers.shutdown().await;
    let meta = root.join("meta.redb");
    for _ in 0..250 {
        let open = std::fs::read_dir("/proc/self/fd").unwrap().flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == meta));
        if !open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.leak_check();
}
