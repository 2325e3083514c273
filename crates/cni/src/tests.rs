//! The library against real processes: plugins written here as small scripts (python3 and sh), so
//! chaining, the cache, the environment and every hostile behaviour (a hang, a flood, an error
//! object, garbage) are checked without root. tests/tests/cni.rs runs Debian's plugins.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

struct Plugins {
    dir: PathBuf,
}

impl Plugins {
    fn new(name: &str) -> Plugins {
        let dir = std::env::temp_dir().join(format!("berth-cni-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("calls")).unwrap();
        let plugins = Plugins { dir };
        // Records each call (command, stdin, environment) under calls/, numbered.
        let record = format!(
            "import json, os, sys\nconf = json.load(sys.stdin)\ncalls = '{}/calls'\nn = len(os.listdir(calls))\n\
             json.dump({{'command': os.environ['CNI_COMMAND'], 'type': conf['type'], 'stdin': conf, 'env': dict(os.environ)}}, open(f'{{calls}}/{{n:03}}', 'w'))\n",
            plugins.dir.display()
        );
        // An IPAM-like first plugin: a result with one interface and address.
        plugins.script(
            "fake-ip",
            &format!(
                "#!/usr/bin/python3\n{record}if conf.get('fail') and os.environ['CNI_COMMAND'] == 'ADD':\n    print(json.dumps({{'cniVersion': '1.0.0', 'code': 7, 'msg': 'no addresses left', 'details': 'pool ' + conf['fail']}}))\n    print('fake-ip: giving up', file=sys.stderr)\n    sys.exit(1)\n\
                 if os.environ['CNI_COMMAND'] == 'ADD':\n    print(json.dumps({{'cniVersion': '1.0.0', 'interfaces': [{{'name': os.environ['CNI_IFNAME'], 'sandbox': os.environ['CNI_NETNS']}}], 'ips': [{{'address': '10.9.0.7/24', 'gateway': '10.9.0.1', 'interface': 0}}], 'custom': 'kept'}}))\n"
            ),
        );
        // A chained plugin: passes prevResult on with a nameserver added.
        plugins.script(
            "fake-dns",
            &format!(
                "#!/usr/bin/python3\n{record}if os.environ['CNI_COMMAND'] == 'ADD':\n    r = conf['prevResult']\n    r['dns'] = {{'nameservers': ['10.9.0.53']}}\n    print(json.dumps(r))\n"
            ),
        );
        plugins.script("fake-version", "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n");
        plugins.script("hang", &format!("#!/bin/sh\necho $$ > {}/hang.pid\nexec sleep 1000\n", plugins.dir.display()));
        plugins.script("flood", "#!/bin/sh\nhead -c 100000000 /dev/zero\n");
        plugins.script("garbage", "#!/bin/sh\ncat >/dev/null\necho 'this is not JSON'\n");
        plugins.script("crash", "#!/bin/sh\necho 'segfault-ish' >&2\nexit 2\n");
        plugins
    }

    fn script(&self, name: &str, body: &str) {
        let path = self.dir.join("bin").join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn cni(&self) -> Cni {
        Cni::new(vec![self.dir.join("nothing-here"), self.dir.join("bin")], self.dir.join("cache"))
            .with_limits(Limits { timeout: Duration::from_secs(2), ..Limits::default() })
    }

    fn calls(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.join("calls")).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        names.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
    }

    fn clear_calls(&self) {
        for e in std::fs::read_dir(self.dir.join("calls")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
}

impl Drop for Plugins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn list(plugins: &str) -> NetworkList {
    let text = format!(r#"{{"cniVersion":"1.0.0","name":"testnet","plugins":[{plugins}]}}"#);
    NetworkList::parse(text.as_bytes(), false, Path::new("test.conflist")).unwrap()
}

fn attachment(id: &str) -> Attachment {
    Attachment {
        container_id: id.into(),
        netns: PathBuf::from(format!("/run/netns/{id}")),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), "web".into())],
        capability_args: [("portMappings".to_string(), serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]))]
            .into_iter()
            .collect(),
    }
}

#[tokio::test]
async fn add_chains_results_and_del_after_a_restart_uses_the_cache() {
    let plugins = Plugins::new("chain");
    let net = list(r#"{"type":"fake-ip","subnet":"10.9.0.0/24"},{"type":"fake-dns","capabilities":{"portMappings":true}}"#);
    let output = plugins.cni().add(&net, &attachment("pod1")).await.unwrap();
    assert_eq!(output.result.sandbox_ips(), ["10.9.0.7"]);
    assert_eq!(output.result.dns.nameservers, ["10.9.0.53"]);
    assert_eq!(output.raw["custom"], "kept", "fields berth does not model pass through");

    let calls = plugins.calls();
    assert_eq!(
        calls.iter().map(|c| (c["command"].as_str().unwrap(), c["type"].as_str().unwrap())).collect::<Vec<_>>(),
        [("ADD", "fake-ip"), ("ADD", "fake-dns")]
    );
    let (first, second) = (&calls[0]["stdin"], &calls[1]["stdin"]);
    assert_eq!(
        (first["name"].as_str(), first["cniVersion"].as_str(), first["subnet"].as_str()),
        (Some("testnet"), Some("1.0.0"), Some("10.9.0.0/24"))
    );
    assert!(first.get("prevResult").is_none() && first.get("runtimeConfig").is_none(), "{first}");
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.9.0.7/24");
    assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080, "only the plugin declaring the capability gets it");
    let env = calls[0]["env"].as_object().unwrap();
    let mut names: Vec<_> = env.keys().map(String::as_str).filter(|k| !k.starts_with("LC_") && *k != "PWD").collect();
    names.sort();
    assert_eq!(names, ["CNI_ARGS", "CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_PATH", "PATH"], "a clean environment");
    assert_eq!((env["CNI_ARGS"].as_str(), env["CNI_NETNS"].as_str()), (Some("IgnoreUnknown=1;K8S_POD_NAME=web"), Some("/run/netns/pod1")));

    // CHECK (1.0.0): each plugin, with the cached result.
    plugins.clear_calls();
    plugins.cni().check("testnet", &attachment("pod1")).await.unwrap();
    assert!(plugins.calls().iter().all(|c| c["command"] == "CHECK" && c["stdin"]["prevResult"]["dns"]["nameservers"][0] == "10.9.0.53"));

    // A new Cni (berthd restarted), the config file gone: DEL in reverse, with the final result.
    plugins.clear_calls();
    let restarted = plugins.cni();
    restarted.del("testnet", &attachment("pod1")).await.unwrap();
    let calls = plugins.calls();
    assert_eq!(
        calls.iter().map(|c| (c["command"].as_str().unwrap(), c["type"].as_str().unwrap())).collect::<Vec<_>>(),
        [("DEL", "fake-dns"), ("DEL", "fake-ip")]
    );
    assert!(calls.iter().all(|c| c["stdin"]["prevResult"]["dns"]["nameservers"][0] == "10.9.0.53"));
    assert!(restarted.cache().all().is_empty(), "DEL removed the cache entry");
    plugins.clear_calls();
    restarted.del("testnet", &attachment("pod1")).await.unwrap();
    assert!(plugins.calls().is_empty(), "a second DEL has nothing to do");
    let err = restarted.check("testnet", &attachment("pod1")).await.unwrap_err();
    assert!(matches!(err, Error::NotCached(_)), "{err}");
}

#[tokio::test]
async fn a_failed_add_is_undone_and_says_what_the_plugin_said() {
    let plugins = Plugins::new("fail");
    let net = list(r#"{"type":"fake-dns-not-first-so-ip-first","x":1}"#);
    let err = plugins.cni().add(&net, &attachment("pod2")).await.unwrap_err();
    assert!(matches!(err, Error::PluginNotFound { .. }), "{err}");

    // The second plugin fails with an error object: the first gets its DEL, the cache is empty.
    plugins.clear_calls();
    let net = list(r#"{"type":"fake-ip"},{"type":"fake-ip","fail":"blue"}"#);
    let err = plugins.cni().add(&net, &attachment("pod2")).await.unwrap_err();
    match &err {
        Error::Plugin(f) => {
            assert_eq!(
                (f.code, f.msg.as_str(), f.details.as_str(), f.stderr.as_str()),
                (Some(7), "no addresses left", "pool blue", "fake-ip: giving up")
            )
        }
        other => panic!("{other}"),
    }
    let commands: Vec<_> = plugins.calls().iter().map(|c| c["command"].as_str().unwrap().to_string()).collect();
    assert_eq!(commands, ["ADD", "ADD", "DEL", "DEL"]);
    assert!(plugins.cni().cache().all().is_empty());
}

#[tokio::test]
async fn hostile_plugins_get_clear_errors_quickly_and_are_killed() {
    let plugins = Plugins::new("hostile");
    let cni = plugins.cni();

    let started = Instant::now();
    let err = cni.add(&list(r#"{"type":"hang"}"#), &attachment("hang")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout (2 s) held, and the undo's DEL timed out too");
    let pid: i32 = std::fs::read_to_string(plugins.dir.join("hang.pid")).unwrap().trim().parse().unwrap();
    let gone = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(gone.elapsed() < Duration::from_secs(5), "the hung plugin {pid} was not killed");
        std::thread::sleep(Duration::from_millis(20));
    }

    let started = Instant::now();
    let err = cni.add(&list(r#"{"type":"flood"}"#), &attachment("flood")).await.unwrap_err();
    assert!(matches!(err, Error::OutputTooLarge { limit: 1048576, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "a flood is cut at the cap, not at the timeout: {:?}", started.elapsed());

    let err = cni.add(&list(r#"{"type":"garbage"}"#), &attachment("garbage")).await.unwrap_err();
    assert!(matches!(err, Error::BadOutput { .. }) && err.to_string().contains("garbage"), "{err}");
    let err = cni.add(&list(r#"{"type":"crash"}"#), &attachment("crash")).await.unwrap_err();
    assert!(err.to_string().contains("exited with") && err.to_string().contains("segfault-ish"), "{err}");
    // Each failed ADD was undone by a DEL; where that DEL failed too, the entry stays for a retry
    // (GC, or the DEL of the pod's removal) rather than forgetting what may be set up.
    let mut kept: Vec<_> = cni.cache().all().into_iter().map(|e| e.container_id).collect();
    kept.sort();
    assert_eq!(kept, ["crash", "flood", "hang"], "garbage's DEL succeeded (its output is not read)");

    for bad in [
        Attachment { container_id: "../etc".into(), ..attachment("x") },
        Attachment { ifname: "a-very-long-interface".into(), ..attachment("x") },
        Attachment { args: vec![("A".into(), "b;C=d".into())], ..attachment("x") },
        Attachment { netns: "relative".into(), ..attachment("x") },
        Attachment { netns: "".into(), ..attachment("x") },
    ] {
        let err = cni.add(&list(r#"{"type":"fake-ip"}"#), &bad).await.unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }
}

#[tokio::test]
async fn configs_load_in_name_order_and_version_status_gc_work() {
    let plugins = Plugins::new("dir");
    let conf = plugins.dir.join("net.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("20-b.conflist"), r#"{"cniVersion":"1.1.0","name":"b","plugins":[{"type":"fake-ip"}]}"#).unwrap();
    std::fs::write(conf.join("10-broken.conflist"), "{ not json").unwrap();
    std::fs::write(conf.join("30-a.conf"), r#"{"cniVersion":"0.4.0","name":"a","type":"fake-ip"}"#).unwrap();
    std::fs::write(conf.join("README"), "ignored").unwrap();
    let loaded = load_dir(&conf);
    assert_eq!(loaded.networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
    assert_eq!(loaded.errors.len(), 1);
    assert!(loaded.errors[0].to_string().contains("10-broken.conflist"), "{}", loaded.errors[0]);
    assert!(load_dir(&plugins.dir.join("absent")).networks.is_empty());

    let cni = plugins.cni();
    assert_eq!(cni.version("fake-version").await.unwrap(), ["0.4.0", "1.0.0"]);
    let (b, a) = (&loaded.networks[0], &loaded.networks[1]);
    plugins.clear_calls();
    cni.status(b).await.unwrap();
    assert_eq!(plugins.calls()[0]["command"], "STATUS");
    cni.status(a).await.unwrap();
    assert_eq!(plugins.calls().len(), 1, "a 0.4.0 list has no STATUS command");

    // GC: the cached attachment not in the valid set is deleted; 1.1.0 plugins get GC with the valid ones.
    cni.add(b, &attachment("keep")).await.unwrap();
    cni.add(b, &attachment("stale")).await.unwrap();
    plugins.clear_calls();
    cni.gc(b, &[attachment("keep")]).await.unwrap();
    let calls = plugins.calls();
    assert_eq!(calls.iter().map(|c| c["command"].as_str().unwrap()).collect::<Vec<_>>(), ["DEL", "GC"]);
    assert_eq!(calls[0]["env"]["CNI_CONTAINERID"], "stale");
    assert_eq!(calls[1]["stdin"]["cni.dev/valid-attachments"], serde_json::json!([{"containerID": "keep", "ifname": "eth0"}]));
    assert_eq!(cni.cache().all().iter().map(|e| e.container_id.as_str()).collect::<Vec<_>>(), ["keep"]);
}
