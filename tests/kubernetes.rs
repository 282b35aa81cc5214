//! examples/kubernetes: the manifests validate against the Kubernetes schemas (kubernetes-validate, offline,
//! strict), the config in the ConfigMap passes `weir check`, and the manifests agree with it: the config is
//! mounted where hot reload sees its updates, the probes reach the admin listener, and the pod's grace
//! period outlasts the drain.

mod support;

use std::process::Command;

use support::*;

fn manifests() -> std::path::PathBuf {
    workspace().join("examples/kubernetes/weir.yaml")
}

/// Every document of the manifests, as JSON (PyYAML reads the YAML: nothing here parses it by hand).
fn documents() -> Vec<serde_json::Value> {
    let out = python_output(
        "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        &[manifests().as_os_str()],
    );
    serde_json::from_slice(&out).expect("JSON")
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifests"))
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(manifests())
        .output()
        .expect("kubernetes-validate is missing: run `make test-deps`");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_config_map_holds_a_config_weir_check_accepts_and_the_pods_agree_with_it() {
    let docs = documents();
    let text = find(&docs, "ConfigMap", "weir-config")["data"]["weir.toml"]
        .as_str()
        .expect("weir.toml in the ConfigMap");
    let checked = check(text);
    assert!(checked.success, "{}", checked.stderr);

    let config: toml::Table = text.parse().expect("TOML");
    let server = config["server"].as_table().expect("[server]");
    assert!(
        server.contains_key("watch_config"),
        "nothing would reload the ConfigMap's updates"
    );
    let admin_port: u16 = config["admin"]["listen"]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .expect("[admin] listen");
    let shutdown = server["shutdown_timeout"]
        .as_str()
        .expect("shutdown_timeout");
    let shutdown: u64 = shutdown.trim_end_matches('s').parse().expect("seconds");

    let pod = &find(&docs, "Deployment", "weir")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args, ["run", "-c", "/etc/weir/weir.toml"]);
    let mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("the config's mount");
    assert_eq!(mount["mountPath"], "/etc/weir");
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never sees the ConfigMap's updates"
    );

    let admin = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("the admin port");
    assert_eq!(admin["containerPort"], admin_port);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        grace > shutdown + pause,
        "the pod is killed before its drain ends: {grace} s ≤ {shutdown} s + {pause} s"
    );

    let store = config["store"].as_table().expect("[store]");
    assert_eq!(store["backend"].as_str(), Some("redis"));
    find(&docs, "Service", "redis");
}
