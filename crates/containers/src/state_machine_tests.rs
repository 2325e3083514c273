//! The library's state machine against fake shims (crate::fake_shims): no root, no processes, no
//! mounts. Exits pushed and waited for, stop's escalation, auto-remove, and recovery reconciling
//! records with what shims hold (or with shims that died).

use crate::events::Action;
use crate::fake_shims::FakeShims;
use crate::record::{ContainerRecord, State};
use crate::shim_launcher::Binaries;
use crate::shims::Shims;
use crate::{Containers, Paths};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fixture {
    containers: Containers,
    shims: FakeShims,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("berth-state-machine-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let images = Arc::new(berth_image::Store::open(&dir.join("root")).unwrap());
    let paths =
        Paths { data: dir.join("root/containers"), state: dir.join("state"), runtime_root: dir.join("runtime"), volumes: dir.join("root/volumes") };
    let binaries = Binaries {
        shim: "berth-shim".into(),
        runtimes: [("fake".into(), "/bin/false".into())].into_iter().collect(),
        default_runtime: "fake".into(),
    };
    let shims = FakeShims::default();
    let containers = Containers::open_with(images, paths, binaries, 1 << 20, Arc::new(shims.clone())).unwrap();
    Fixture { containers, shims, dir }
}

impl Fixture {
    /// A container as create leaves it (its own shim holds it), started when asked; followed.
    async fn adopt(&self, id: &str, running: bool, auto_remove: bool) -> ContainerRecord {
        let record = self.place(id, running, auto_remove).await;
        let shim_dir = self.containers.shim_dir(id);
        self.containers.monitor(id);
        // Followed before the test makes anything happen: a fake's events go to subscribers only.
        while !self.shims.subscribed(&shim_dir) {
            tokio::task::yield_now().await;
        }
        record
    }

    /// The same, not followed yet (as berthd finds it at start-up).
    async fn place(&self, id: &str, running: bool, auto_remove: bool) -> ContainerRecord {
        let shim_dir = self.containers.shim_dir(id);
        self.shims.launch(&shim_dir, "/bin/false".as_ref(), "/".as_ref()).unwrap();
        let client = self.shims.client(&shim_dir);
        let request = berth_shim::CreateRequest { bundle: "/b".into(), log: "/l".into(), log_max_size: 0, tty: false, stdin: false };
        let pid = client.create(id, &request).await.unwrap();
        let mut record = ContainerRecord::for_test(id, &format!("n-{id}"));
        record.auto_remove = auto_remove;
        record.pid = pid;
        if running {
            client.start(id).await.unwrap();
            record.state = State::Running;
        }
        self.record(record.clone()).await;
        record
    }

    /// A record as the database had it at start-up.
    async fn record(&self, record: ContainerRecord) {
        drop(self.containers.table().insert(record.clone()).unwrap());
        self.containers.persist(&record).await.unwrap();
    }
}

#[tokio::test]
async fn an_exit_is_pushed_recorded_announced_and_waited_for() {
    let f = fixture("exit");
    let mut events = f.containers.subscribe();
    let record = f.adopt("c1", true, false).await;
    f.shims.oom(&f.containers.shim_dir("c1"), "c1");
    assert_eq!(events.recv().await.unwrap().action, Action::Oom, "an OOM kill that spares the init is announced");
    assert_eq!(f.containers.find("c1").unwrap().state, State::Running);
    let waiter = tokio::spawn({
        let containers = f.containers.clone();
        async move { containers.wait("c1").await }
    });
    f.shims.exit(&f.containers.shim_dir("c1"), "c1", 3);
    let waited = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
    assert_eq!((waited.state, waited.exit_code, waited.releasing), (State::Exited, Some(3), false));
    assert_eq!(events.recv().await.unwrap().action, Action::Die);
    // Released: the shim no longer holds it, and (its last container) is gone.
    assert_eq!(f.shims.status(&f.containers.shim_dir("c1"), "c1"), None);
    assert_eq!(f.shims.pid(&f.containers.shim_dir(&record.shim)), None);
    // A second wait answers at once; the record stays until removed.
    assert_eq!(f.containers.wait("n-c1").await.unwrap().exit_code, Some(3));
    assert_eq!(f.containers.list().len(), 1);
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_its_timeout() {
    let f = fixture("stop");
    f.shims.ignore_signal(libc::SIGTERM);
    f.adopt("c2", true, false).await;
    let started = Instant::now();
    let stopped = f.containers.stop("c2", Duration::from_millis(300)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300), "SIGTERM was given its time");
    assert_eq!((stopped.state, stopped.exit_code), (State::Exited, Some(137)));
    // Stopping an exited container is not an error: it says how it ended.
    assert_eq!(f.containers.stop("c2", Duration::ZERO).await.unwrap().exit_code, Some(137));
    assert!(f.containers.kill("c2", libc::SIGTERM, false).await.is_err(), "an exited container takes no signal");
}

#[tokio::test]
async fn an_auto_remove_container_goes_once_exited() {
    let f = fixture("rm");
    let mut events = f.containers.subscribe();
    f.adopt("c3", true, true).await;
    let removal = tokio::spawn({
        let containers = f.containers.clone();
        async move { containers.wait_removed("c3").await }
    });
    f.shims.exit(&f.containers.shim_dir("c3"), "c3", 0);
    let last = tokio::time::timeout(Duration::from_secs(5), removal).await.unwrap().unwrap().unwrap();
    assert_eq!(last.exit_code, Some(0));
    assert!(f.containers.list().is_empty());
    let actions: Vec<Action> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.action).collect();
    assert_eq!(actions, [Action::Die, Action::Destroy]);
    assert!(matches!(f.containers.find("c3"), Err(crate::Error::NotFound(_))));
}

#[tokio::test]
async fn remove_refuses_a_running_container_without_force_and_kills_it_with() {
    let f = fixture("remove");
    f.adopt("c4", true, false).await;
    assert!(matches!(f.containers.remove("c4", false).await, Err(crate::Error::WrongState(_))));
    let removed = f.containers.remove("c4", true).await.unwrap();
    assert_eq!((removed.state, removed.exit_code), (State::Exited, Some(137)));
    assert!(f.containers.list().is_empty());
}

#[tokio::test]
async fn recovery_reconciles_records_with_what_the_shims_hold() {
    let f = fixture("recover");
    // The shim ran the container, but berthd died before recording the start.
    let started_unrecorded = f.place("started", true, false).await;
    f.containers.table().get("started").unwrap().send_modify(|r| r.state = State::Created);
    // Exited while berthd was away: the shim still holds it, stopped.
    f.place("exited", true, false).await;
    f.shims.exit(&f.containers.shim_dir("exited"), "exited", 7);
    // Its shim was killed: nobody supervises it any more.
    f.place("orphan", true, false).await;
    f.shims.crash(&f.containers.shim_dir("orphan"));
    // Half created when berthd died.
    let mut half = ContainerRecord::for_test("half", "half");
    half.state = State::Creating;
    f.record(half).await;

    let recovered = f.containers.recover().await.unwrap();
    assert_eq!(recovered.half_created, 1);
    let started = f.containers.find("started").unwrap();
    assert_eq!((started.state, started.pid), (State::Running, started_unrecorded.pid));
    let exited = f.containers.wait("exited").await.unwrap();
    assert_eq!(exited.exit_code, Some(7));
    let orphan = f.containers.wait("orphan").await.unwrap();
    assert_eq!((orphan.state, orphan.exit_code), (State::Exited, Some(255)));
    assert!(f.shims.cleaned().contains(&"orphan".to_string()), "the runtime cleans up after the dead shim");
    assert!(f.containers.find("half").is_err());
}

#[tokio::test]
async fn a_pod_found_half_created_at_start_up_is_removed_and_a_ready_one_without_namespaces_is_not_ready() {
    use crate::record::Change;
    use crate::sandbox::{SandboxConfig, SandboxRecord, SandboxState};
    let f = fixture("pods");
    let pod = |id: &str, state| SandboxRecord {
        id: id.into(),
        config: SandboxConfig { name: id.into(), namespace: "default".into(), ..Default::default() },
        state,
        created_at: 1,
        ips: Vec::new(),
    };
    // berthd died after the network ADD of p-creating: recovery must detach it.
    let network = std::sync::Arc::new(crate::pod_network::MemoryNetwork::default());
    f.containers.set_pod_network(network.clone());
    let attachment = crate::pod_network::PodAttachment {
        sandbox_id: "p-creating".into(),
        netns: f.containers.sandbox_dir("p-creating").join("ns/net"),
        name: "p-creating".into(),
        namespace: "default".into(),
        uid: String::new(),
        port_mappings: Vec::new(),
    };
    crate::pod_network::PodNetwork::attach(network.as_ref(), &attachment).await.unwrap();
    for record in [pod("p-creating", SandboxState::Creating), pod("p-ready", SandboxState::Ready)] {
        std::fs::create_dir_all(f.containers.sandbox_dir(&record.id)).unwrap();
        f.containers.sandboxes.lock().unwrap().insert(record.id.clone(), record.clone());
        f.containers.persister.write(Change::PutSandbox(Box::new(record))).await.unwrap();
    }
    let recovered = f.containers.recover().await.unwrap();
    assert_eq!(recovered.half_created_pods, 1);
    let left: Vec<(String, SandboxState)> = f.containers.list_sandboxes().into_iter().map(|p| (p.id, p.state)).collect();
    assert_eq!(left, [("p-ready".to_string(), SandboxState::NotReady)], "its namespaces are not pinned (a reboot emptied the state dir)");
    assert!(!f.containers.sandbox_dir("p-creating").exists(), "the half-created pod's directory went too");
    assert!(network.attached().is_empty(), "the half-created pod's network was detached");
}
