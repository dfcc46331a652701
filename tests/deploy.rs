//! The files in deploy/ are meant to be used as they are: every YAML file
//! parses, every config they mount passes `jwtgate check` with the
//! environment they give it, and probes point at the admin port that
//! config opens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(path);
        }
    }
    files
}

fn load(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the real `jwtgate check` on `config` text with `env`; panics with
/// its output on failure. Returns the admin port the config opens.
fn check(name: &str, config: &str, env: &HashMap<String, String>) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    // The shipped files are templates: `check` refuses their YOUR_…
    // placeholders (tested in tests/cli.rs), so fill them in as a user would.
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.clone(), v.replace("YOUR_", "my-"))).collect();
    let env = &env;
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(["check", "-c", path.to_str().unwrap()])
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: jwtgate check failed\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = jwtgate::Config::parse(config, name, Path::new("."), &|k| env.get(k).cloned()).unwrap();
    i64::from(parsed.server.admin_listen.expect("admin_listen is set").port())
}

/// `env:` of a container as a map.
fn container_env(container: &Yaml) -> HashMap<String, String> {
    container["env"]
        .as_vec()
        .map(|vars| {
            vars.iter()
                .map(|v| (v["name"].as_str().unwrap().to_string(), v["value"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_yaml_file_parses() {
    let files = yaml_files(&deploy_dir());
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        assert!(!load(&file).is_empty(), "{} is empty", file.display());
    }
}

#[test]
fn kubernetes_configs_pass_check_and_probes_hit_the_admin_port() {
    for file in yaml_files(&deploy_dir().join("kubernetes")) {
        let docs = load(&file);
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        let config = docs
            .iter()
            .find(|d| d["kind"].as_str() == Some("ConfigMap"))
            .and_then(|d| d["data"]["config.toml"].as_str())
            .unwrap_or_else(|| panic!("{}: no ConfigMap with config.toml", file.display()));
        let deployment = docs.iter().find(|d| d["kind"].as_str() == Some("Deployment")).expect("a Deployment");
        let containers = deployment["spec"]["template"]["spec"]["containers"].as_vec().unwrap();
        let gateway = containers.iter().find(|c| c["name"].as_str().unwrap().contains("jwtgate")).unwrap();
        let port = check(&file.display().to_string(), config, &container_env(gateway));
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(gateway[probe]["httpGet"]["port"].as_i64(), Some(port), "{}: {probe}", file.display());
        }
        assert_eq!(gateway["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
        assert_eq!(gateway["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
        let mount = gateway["volumeMounts"][0]["mountPath"].as_str().unwrap();
        let args: Vec<&str> = gateway["args"].as_vec().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.windows(2).any(|w| w == ["-c", &format!("{mount}/config.toml")]), "{args:?}");
        assert!(gateway["resources"]["requests"]["memory"].as_str().is_some());
        assert!(kinds.contains(&"Service"), "{}: {kinds:?}", file.display());
    }
    let edge = load(&deploy_dir().join("kubernetes/edge.yaml"));
    assert!(edge.iter().any(|d| d["kind"].as_str() == Some("HorizontalPodAutoscaler")));
}

#[test]
fn compose_mounts_a_config_that_passes_check() {
    let docs = load(&deploy_dir().join("docker-compose.yml"));
    let gateway = &docs[0]["services"]["jwtgate"];
    let volume = gateway["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .find(|v| v.contains("/etc/jwtgate/config.toml"))
        .expect("the config is mounted");
    let host_path = deploy_dir().join(volume.split(':').next().unwrap());
    let config = std::fs::read_to_string(&host_path).unwrap();
    // Compose's "${VAR:-default}" gives the defaults when nothing is set.
    let env: HashMap<String, String> = gateway["environment"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let value = v.as_str().unwrap();
            let value = value.split_once(":-").map_or(value, |(_, d)| d.trim_end_matches('}'));
            (k.as_str().unwrap().to_string(), value.to_string())
        })
        .collect();
    let port = check("docker-compose.yml", &config, &env);
    let command: Vec<&str> = gateway["command"].as_vec().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(command.contains(&"/etc/jwtgate/config.toml"));
    let ports: Vec<&str> = gateway["ports"].as_vec().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(ports.iter().any(|p| p.ends_with(&format!(":{port}"))), "{ports:?}");
}

#[test]
fn dockerfile_and_systemd_unit_fit_the_binary() {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("USER 10001"), "runs as a non-root user");
    assert!(dockerfile.contains("/etc/jwtgate/config.toml"));
    assert!(dockerfile.contains("/readyz"));

    let unit = std::fs::read_to_string(deploy_dir().join("systemd/jwtgate.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/jwtgate --log-format json run -c /etc/jwtgate/config.toml"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // The unit's own config check is the one the binary runs.
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate")).args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--watch"));
}

#[test]
fn forward_auth_examples_agree_with_their_jwtgate_config() {
    let dir = deploy_dir().join("forward-auth");
    let config = std::fs::read_to_string(dir.join("jwtgate.toml")).unwrap();
    let env: HashMap<String, String> = [("JWTGATE_ISSUER", "https://issuer.example/"), ("JWTGATE_AUDIENCE", "api")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    check("forward-auth/jwtgate.toml", &config, &env);
    let parsed = jwtgate::Config::parse(&config, "jwtgate.toml", Path::new("."), &|k| env.get(k).cloned()).unwrap();
    let check_path = parsed.forward_auth.expect("[forward_auth] is set").path;
    let listen = parsed.server.listen.to_string();
    let names: Vec<String> = parsed.headers.claims.iter().map(|(_, name)| name.as_str().to_string()).collect();
    assert_eq!(names.len(), 2);
    // Each edge proxy sends its checks to this listener and path, and copies every identity header.
    let port = format!("port_value: {}", parsed.server.listen.port());
    let expectations: [(&str, Vec<String>); 4] = [
        ("nginx.conf", vec![format!("server {listen};"), format!("proxy_pass http://jwtgate{check_path};")]),
        ("traefik.yml", vec![format!("address: \"http://{listen}{check_path}\"")]),
        ("Caddyfile", vec![format!("forward_auth {listen} {{"), format!("uri {check_path}")]),
        ("envoy.yaml", vec![format!("uri: http://{listen}"), format!("path_prefix: {check_path}"), port]),
    ];
    for (file, needles) in expectations {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for needle in needles {
            assert!(text.contains(&needle), "{file} does not contain {needle:?}");
        }
        let lower = text.to_ascii_lowercase();
        for name in &names {
            assert!(lower.contains(name.as_str()), "{file} does not copy {name}");
        }
    }
}
