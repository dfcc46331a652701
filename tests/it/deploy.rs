//! The files shipped for users are meant to be used as they are: every
//! YAML file in deploy/ parses, every config they mount passes `jwtgate
//! check` with the environment they give it, and probes point at the admin
//! port that config opens. The docs say what the code does: every config
//! key is documented and every documented key exists, every config block
//! passes `check`, every link leads somewhere.
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

/// The Dockerfile's instructions, one per logical line (continuations
/// joined, comments and blank lines left out): `(INSTRUCTION, rest)`.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (instruction, rest) = current.split_once(' ').unwrap_or((current.as_str(), ""));
                instructions.push((instruction.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    instructions
}

/// The `runAsUser` of the jwtgate container of each Kubernetes manifest.
fn kubernetes_users() -> Vec<(PathBuf, i64)> {
    yaml_files(&deploy_dir().join("kubernetes"))
        .into_iter()
        .map(|file| {
            let docs = load(&file);
            let deployment = docs.iter().find(|d| d["kind"].as_str() == Some("Deployment")).unwrap();
            let containers = deployment["spec"]["template"]["spec"]["containers"].as_vec().unwrap();
            let gateway = containers.iter().find(|c| c["name"].as_str().unwrap().contains("jwtgate")).unwrap();
            let user = gateway["securityContext"]["runAsUser"].as_i64().unwrap();
            (file, user)
        })
        .collect()
}

/// The admin port deploy/config.toml (the file compose mounts) opens.
fn deploy_config_admin_port() -> u16 {
    let text = std::fs::read_to_string(deploy_dir().join("config.toml")).unwrap();
    let env = |name: &str| match name {
        "JWTGATE_ISSUER" => Some("https://issuer.example/".to_string()),
        _ => Some("api".to_string()),
    };
    let config = jwtgate::Config::parse(&text, "config.toml", Path::new("."), &env).unwrap();
    let admin = config.server.admin_listen.expect("deploy/config.toml opens the admin listener");
    assert!(admin.ip().is_unspecified(), "the admin listener must be reachable from outside the container: {admin}");
    admin.port()
}

#[test]
fn the_image_runs_a_static_binary_as_non_root_on_distroless() {
    let instructions = dockerfile_instructions();
    let all = |name: &str| -> Vec<&str> {
        instructions.iter().filter(|(i, _)| i == name).map(|(_, rest)| rest.as_str()).collect()
    };
    let build = all("RUN").join("\n");
    assert!(build.contains("cargo build --release --locked"), "{build}");
    assert!(build.contains("-C target-feature=+crt-static"), "{build}");
    assert!(build.contains("--target"), "without an explicit --target, build scripts would be static too: {build}");
    let from = all("FROM");
    assert_eq!(from.last(), Some(&"gcr.io/distroless/static-debian12:nonroot"), "the runtime stage");
    // No shell in the runtime image: nothing after its FROM may need one.
    let runtime_start = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    for (instruction, rest) in &instructions[runtime_start..] {
        assert_ne!(instruction, "RUN", "the runtime stage has no shell to RUN {rest}");
        assert!(!rest.contains("curl"), "{instruction} {rest}");
    }
    assert_eq!(all("ENTRYPOINT"), [r#"["/jwtgate"]"#]);
    assert!(all("COPY").contains(&"--from=build /jwtgate /jwtgate"), "{:?}", all("COPY"));
    assert_eq!(all("CMD").last(), Some(&r#"["run", "-c", "/etc/jwtgate/config.toml"]"#));
    // One non-root user, the same in the image and the manifests.
    let user = all("USER");
    assert_eq!(user, ["65532:65532"], "distroless's nonroot user and group");
    for (file, run_as) in kubernetes_users() {
        assert_eq!(run_as, 65532, "{}: runAsUser differs from the image's USER", file.display());
    }
}

/// The HEALTHCHECK in exec form: `jwtgate probe` on the admin port the
/// shipped config opens, a command line the binary accepts (a wrong flag
/// would exit 2, which Docker reserves, instead of 1).
#[test]
fn the_image_healthcheck_probes_readyz_on_the_admin_port_without_a_shell() {
    let instructions = dockerfile_instructions();
    let healthcheck = instructions.iter().find(|(i, _)| i == "HEALTHCHECK").map(|(_, rest)| rest.as_str()).unwrap();
    let (options, exec) = healthcheck.split_once("CMD ").unwrap();
    assert!(options.contains("--timeout=3s"), "Docker's timeout leaves the probe's own 2 s room: {options}");
    let argv: Vec<String> = serde_json::from_str(exec.trim()).unwrap_or_else(|e| panic!("not exec form ({e}): {exec}"));
    assert_eq!(argv[..2], ["/jwtgate", "probe"]);
    let url = argv.last().unwrap();
    assert_eq!(url, &format!("http://127.0.0.1:{}/readyz", deploy_config_admin_port()));
    // The same arguments against a port where nothing listens: a probe failure, exit 1.
    let mut args: Vec<String> = argv[1..].to_vec();
    *args.last_mut().unwrap() = format!("http://{}/readyz", crate::support::free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate")).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection refused"));
}

/// `.dockerignore` keeps build output, git and node_modules out of the
/// build context, and nothing the Dockerfile copies.
#[test]
fn dockerignore_keeps_out_build_output_and_git_but_not_what_the_build_copies() {
    let text = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let patterns: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for needed in ["target/", ".git", "**/node_modules/", "fuzz/"] {
        assert!(patterns.contains(&needed), ".dockerignore lacks {needed}: {patterns:?}");
    }
    let instructions = dockerfile_instructions();
    let copies = instructions.iter().filter(|(i, rest)| i == "COPY" && !rest.starts_with("--from"));
    let mut sources = Vec::new();
    for (_, rest) in copies {
        let words: Vec<&str> = rest.split_whitespace().collect();
        sources.extend(words[..words.len() - 1].iter().map(|w| w.trim_end_matches('/').to_string()));
    }
    assert!(sources.len() >= 5, "{sources:?}");
    for source in &sources {
        assert!(repo().join(source).exists(), "the Dockerfile copies {source}, which does not exist");
        let excluded = patterns.iter().any(|p| {
            let p = p.trim_end_matches('/');
            !p.starts_with('!') && (p == source || source.starts_with(&format!("{p}/")))
        });
        assert!(!excluded, ".dockerignore leaves out {source}, which the Dockerfile copies");
    }
    // build.rs needs no git in the image: the commit comes as a build argument.
    let args: Vec<&str> = instructions.iter().filter(|(i, _)| i == "ARG").map(|(_, r)| r.as_str()).collect();
    assert!(args.iter().any(|a| a.starts_with("JWTGATE_COMMIT")), "{args:?}");
}

#[test]
fn systemd_unit_fits_the_binary() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/jwtgate.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/jwtgate --log-format json run -c /etc/jwtgate/config.toml"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    // The unit's own config check is the one the binary runs.
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate")).args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--watch"));
}

/// The edge Deployment survives node drains one Pod at a time, and
/// Prometheus scrapes /metrics on the admin port through a Service of its
/// own, never through the gateway's Service.
#[test]
fn edge_has_a_disruption_budget_and_a_service_monitor_on_the_admin_port() {
    let docs = load(&deploy_dir().join("kubernetes/edge.yaml"));
    let of_kind = |kind: &'static str| docs.iter().filter(move |d| d["kind"].as_str() == Some(kind));
    let deployment = of_kind("Deployment").next().unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Yaml, labels: &Yaml| {
        let wanted = selector.as_hash().unwrap();
        !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k.as_str().unwrap()].as_str() == v.as_str())
    };

    let budget = of_kind("PodDisruptionBudget").next().expect("a PodDisruptionBudget");
    assert_eq!(budget["apiVersion"].as_str(), Some("policy/v1"));
    assert!(selects(&budget["spec"]["selector"]["matchLabels"], pod_labels), "the budget selects the gateway Pods");
    let min_replicas = of_kind("HorizontalPodAutoscaler").next().unwrap()["spec"]["minReplicas"].as_i64().unwrap();
    let max_unavailable = budget["spec"]["maxUnavailable"].as_i64().expect("maxUnavailable");
    assert!(max_unavailable >= 1 && max_unavailable < min_replicas, "drains can proceed and one Pod always serves");

    let monitor = of_kind("ServiceMonitor").next().expect("a ServiceMonitor");
    assert_eq!(monitor["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    let endpoints = monitor["spec"]["endpoints"].as_vec().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["path"].as_str(), Some("/metrics"));
    let port_name = endpoints[0]["port"].as_str().unwrap();
    let services: Vec<&Yaml> = of_kind("Service")
        .filter(|s| selects(&monitor["spec"]["selector"]["matchLabels"], &s["metadata"]["labels"]))
        .collect();
    assert_eq!(services.len(), 1, "the monitor selects exactly one Service");
    assert!(selects(&services[0]["spec"]["selector"], pod_labels), "that Service leads to the gateway Pods");
    let port = services[0]["spec"]["ports"].as_vec().unwrap().iter().find(|p| p["name"].as_str() == Some(port_name));
    let target = &port.expect("the monitor's port is one of the Service's")["targetPort"];
    // The Service names the container port; the container port is the admin listener's.
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_vec().unwrap();
    let container_port = containers[0]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == target.as_str() || p["containerPort"].as_i64() == target.as_i64())
        .and_then(|p| p["containerPort"].as_i64());
    let readiness_port = containers[0]["readinessProbe"]["httpGet"]["port"].as_i64();
    assert_eq!(container_port, readiness_port, "metrics are scraped on the admin port the probes use");
    // The gateway's own Service does not expose the admin port.
    let gateway_service = of_kind("Service").find(|s| s["metadata"]["name"].as_str() == Some("jwtgate")).unwrap();
    for port in gateway_service["spec"]["ports"].as_vec().unwrap() {
        assert_ne!(port["targetPort"].as_i64(), readiness_port, "the gateway's Service must not lead to /metrics");
    }
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

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The fenced blocks of `lang` in `text`, with the line each starts on.
fn fenced_blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some((i + 1, String::new())),
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A user's value for each `YOUR_…` placeholder: a URL where the whole
/// value is one, else the word in lower case.
fn fill_placeholders(text: &str) -> String {
    let whole_url = ["\"YOUR_ISSUER\"", "\"YOUR_TOKEN_URL\""];
    let mut out = text.to_string();
    for placeholder in whole_url {
        out = out.replace(placeholder, "\"https://your-idp.example/\"");
    }
    while let Some(start) = out.find("YOUR_") {
        let end = out[start..]
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .map_or(out.len(), |n| start + n);
        let word = out[start..end].to_ascii_lowercase().replace('_', "-");
        out.replace_range(start..end, &word);
    }
    out
}

fn run_check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("block.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jwtgate"))
        .args(["check", "-c", path.to_str().unwrap()])
        .env_remove("JWTGATE_CONFIG")
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Issue 15, point 9: every ```toml block in the docs is a complete config
/// that `check` accepts once its placeholders are filled in — and refuses,
/// naming only the placeholders, while they are not.
#[test]
fn every_config_block_in_the_docs_passes_check() {
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, block) in fenced_blocks(&text, "toml") {
            let at = format!("{}:{line}", file.display());
            let (code, out) = run_check(&fill_placeholders(&block));
            assert_eq!(code, Some(0), "{at}: check refused the block:\n{block}\n{out}");
            if block.contains("YOUR_") {
                let (code, out) = run_check(&block);
                assert_eq!(code, Some(2), "{at}: the placeholders passed check:\n{out}");
                assert!(out.lines().all(|l| l.contains("placeholder YOUR_")), "{at}:\n{out}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} blocks found");
}

const PROBE: &str = "zzzz_probe";

/// The keys the code accepts in the table opened by `header` (`[server]`,
/// `[[issuers]]`, `[routes.cors]`), from the message about an unknown key.
fn accepted_keys(header: &str) -> Vec<String> {
    let text = format!("{header}\n{PROBE} = 1\n");
    let error = jwtgate::Config::parse(&text, "probe.toml", Path::new("."), &|_| None).unwrap_err().to_string();
    let line =
        error.lines().find(|l| l.contains(&format!("{PROBE}: unknown key"))).unwrap_or_else(|| panic!("{error}"));
    let (_, keys) = line.split_once("the keys allowed here are ").unwrap_or_else(|| panic!("{line}"));
    keys.split(", ").map(str::to_owned).collect()
}

/// The header that opens the table a docs heading names, for a probe:
/// `[upstreams.NAME]` → `[upstreams.x]`; `[routes.cors]` → inside a route.
fn probe_header(table: &str) -> String {
    let path = table.trim_matches(['[', ']']).replace("NAME", "x");
    match path.split_once('.') {
        Some((array @ ("issuers" | "routes"), _)) => format!("[[{array}]]\n[{path}]"),
        _ if table.starts_with("[[") => format!("[[{path}]]"),
        _ => format!("[{path}]"),
    }
}

/// docs/configuration.md: per `## `[table]`` heading, the keys of its
/// first `| key | type | default | meaning |` table.
fn documented_keys() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_rows = false;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## `").and_then(|h| h.strip_suffix('`')) {
            tables.push((heading.to_string(), Vec::new()));
            in_rows = false;
        } else if line.starts_with("## ") || line.starts_with("### ") {
            in_rows = false;
            if let Some(last) = tables.last_mut() {
                last.0.push('#'); // rows after a sub-heading belong to something else
            }
        } else if line.starts_with("| key |") {
            in_rows = tables.last().is_some_and(|t| !t.0.ends_with('#') && t.1.is_empty());
        } else if in_rows {
            match line.strip_prefix("| `").and_then(|l| l.split_once('`')) {
                Some((key, _)) => tables.last_mut().unwrap().1.push(key.to_string()),
                None if line.starts_with('|') => {}
                None => in_rows = false,
            }
        }
    }
    tables.into_iter().map(|(heading, keys)| (heading.trim_end_matches('#').to_string(), keys)).collect()
}

/// Issue 15, point 9: docs/configuration.md documents exactly the keys the
/// code accepts, table by table.
#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let documented = documented_keys();
    let headings: Vec<&str> = documented.iter().map(|(h, _)| h.as_str()).collect();
    let tables_in_code = accepted_keys("");
    for table in &tables_in_code {
        let named = [format!("[{table}]"), format!("[[{table}]]"), format!("[{table}.NAME]")];
        assert!(named.iter().any(|n| headings.contains(&n.as_str())), "[{table}] has no heading in {headings:?}");
    }
    for (heading, keys) in &documented {
        let mut in_code = accepted_keys(&probe_header(heading));
        let mut in_docs = keys.clone();
        // A key that is a table of its own is documented under its own heading.
        let path = heading.trim_matches(['[', ']']);
        let own_heading = |key: &String| headings.contains(&format!("[{path}.{key}]").as_str());
        in_code.retain(|key| !own_heading(key));
        in_docs.retain(|key| !own_heading(key));
        in_code.sort();
        in_docs.sort();
        assert_eq!(in_docs, in_code, "{heading}: documented keys (left) differ from the code's (right)");
    }
}

/// Every relative link in README.md and docs/ names a file that exists.
#[test]
fn every_relative_link_in_the_docs_leads_to_a_file() {
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("](") {
            let target = text[i + 2..].split(')').next().unwrap_or("");
            let target = target.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = file.parent().unwrap().join(target);
            assert!(resolved.exists(), "{}: link to {target} leads nowhere", file.display());
        }
    }
}
