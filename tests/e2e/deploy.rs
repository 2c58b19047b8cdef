//! What `deploy/` holds and cannot be run here (no container registry, no cluster) is
//! validated: the Kubernetes manifests against the Kubernetes schemas (`kubernetes-validate
//! --strict`, from PyPI), the Compose file against the Compose specification's schema
//! (`check-jsonschema`'s vendored copy), the HAProxy configuration by HAProxy itself, and the
//! gateway configurations they carry by the gateway's own loader.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The tool named by environment variable `variable` (set by `tests/run.sh`); `None` when it is
/// not set and the run does not require it.
fn tool(variable: &str) -> Option<PathBuf> {
    match std::env::var_os(variable) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(std::env::var_os("TONGBAN_REQUIRE_CLIENTS").is_none(), "{variable} is not set");
            eprintln!("skipping: {variable} is not set");
            None
        }
    }
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("the validator runs");
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

#[test]
fn the_kubernetes_manifests_pass_the_kubernetes_schemas() {
    let Some(validate) = tool("TONGBAN_KUBERNETES_VALIDATE") else { return };
    let dir = deploy().join("kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 5, "{manifests:?}");
    let (ok, said) = run(Command::new(&validate).arg("--strict").args(&manifests));
    assert!(ok, "{said}");
    for kind in ["statefulset/tongban", "service/tongban", "configmap/tongban", "poddisruptionbudget/tongban"]
    {
        assert!(said.contains(&format!("passed for resource {kind} ")), "{kind} was validated: {said}");
    }
    // The validator does refuse what is wrong: a field the schema does not have.
    let work = tempfile::tempdir().expect("tempdir");
    let statefulset = std::fs::read_to_string(dir.join("statefulset.yaml")).expect("statefulset");
    let broken = work.path().join("broken.yaml");
    std::fs::write(&broken, statefulset.replace("  replicas: 3", "  replicas: 3\n  replica: 3"))
        .expect("write");
    let (ok, said) = run(Command::new(&validate).arg("--strict").arg(&broken));
    assert!(!ok, "an unknown field passes: {said}");

    // The gateway configuration the ConfigMap carries loads as `serve` would load it.
    let configmap = std::fs::read_to_string(dir.join("configmap.yaml")).expect("configmap");
    let toml: String = configmap
        .split_once("tongban.toml: |\n")
        .expect("the configuration's key")
        .1
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(work.path().join("tongban.toml"), toml).expect("write");
    let (ok, said) = run(Command::new(tongban_e2e::tongban_bin())
        .args(["config", "check", "--no-files"])
        .arg(work.path().join("tongban.toml")));
    assert!(ok, "the ConfigMap's configuration: {said}");
}

#[test]
fn the_compose_file_passes_the_compose_schema_and_its_parts_load() {
    let Some(check) = tool("TONGBAN_CHECK_JSONSCHEMA") else { return };
    let dir = deploy().join("compose");
    let (ok, said) = run(Command::new(&check)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(dir.join("compose.yaml")));
    assert!(ok, "{said}");
    let work = tempfile::tempdir().expect("tempdir");
    let broken = work.path().join("compose.yaml");
    let compose = std::fs::read_to_string(dir.join("compose.yaml")).expect("compose");
    std::fs::write(
        &broken,
        compose.replace("    restart: unless-stopped\n    ports:", "    restart: unless-stopped\n    port:"),
    )
    .expect("write");
    let (ok, said) = run(Command::new(&check).args(["--builtin-schema", "vendor.compose-spec"]).arg(&broken));
    assert!(!ok, "a service key that does not exist passes: {said}");

    let (ok, said) = run(Command::new(tongban_e2e::tongban_bin())
        .args(["config", "check", "--no-files"])
        .arg(dir.join("tongban.toml")));
    assert!(ok, "deploy/compose/tongban.toml: {said}");
    let haproxy = Path::new("/usr/sbin/haproxy");
    if haproxy.exists() {
        // Checked with the replicas' names resolving, as they do on the compose network.
        let config = std::fs::read_to_string(dir.join("haproxy.cfg")).expect("haproxy.cfg");
        let local = config
            .replace("tongban-a:", "127.0.0.1:")
            .replace("tongban-b:", "127.0.0.1:")
            .replace("tongban-c:", "127.0.0.1:");
        std::fs::write(work.path().join("haproxy.cfg"), local).expect("write");
        let (ok, said) = run(Command::new(haproxy).arg("-c").arg("-f").arg(work.path().join("haproxy.cfg")));
        assert!(ok, "deploy/compose/haproxy.cfg: {said}");
    }
}
