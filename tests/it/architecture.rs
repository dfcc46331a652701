//! The layout shows the architecture: between the top-level modules of
//! `src/` (production code, tests excluded), dependencies point one way —
//! no two modules use each other, directly or through others — and
//! `config` is at the bottom: it uses only leaf modules (`path`, the
//! canonicaliser, a pure function of a string, which it needs to tell a
//! route path that is not canonical).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its production code names
/// (`crate::NAME` anywhere, `use crate::{A, B::…}`).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let top =
            relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let production = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let deps = graph.entry(top.clone()).or_default();
        for (i, _) in production.match_indices("crate::") {
            let rest = &production[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                // `crate::{a, b::c}`: the first segment of each item.
                Some(list) => list
                    .split('}')
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap())
                    .collect(),
                None => vec![rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap()],
            };
            for name in names {
                if !name.is_empty() && name != top && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    deps.insert(name.to_string());
                }
            }
        }
    }
    graph
}

/// Every module `from` reaches by following dependencies.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = graph.get(from).into_iter().flatten().map(String::as_str).collect();
    while let Some(module) = todo.pop() {
        if seen.insert(module.to_string()) {
            todo.extend(graph.get(module).into_iter().flatten().map(String::as_str));
        }
    }
    seen
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let graph = module_graph();
    assert!(graph.len() > 20, "{graph:?}");
    let mut cycles = Vec::new();
    for module in graph.keys() {
        if reachable(&graph, module).contains(module) {
            let back: Vec<&String> =
                graph[module].iter().filter(|dep| reachable(&graph, dep).contains(module)).collect();
            cycles.push(format!("{module} -> {back:?} -> … -> {module}"));
        }
    }
    let shown: Vec<String> = graph.iter().map(|(m, deps)| format!("{m} -> {deps:?}")).collect();
    assert!(cycles.is_empty(), "cycles:\n{}\n\ngraph:\n{}", cycles.join("\n"), shown.join("\n"));
}

#[test]
fn config_is_at_the_bottom() {
    let graph = module_graph();
    for dependency in &graph["config"] {
        assert_eq!(graph[dependency], BTreeSet::new(), "config uses {dependency}, which is not a leaf");
    }
    assert!(graph["config"].len() <= 1, "{:?}", graph["config"]);
}

/// A request reaches an upstream only as an `Admitted`, which the
/// gateway's `admit` alone makes: no other production code constructs one.
#[test]
fn only_admit_makes_the_proof_an_upstream_requires() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let read = |file: &str| std::fs::read_to_string(src.join(file)).unwrap();
    let mut makers = Vec::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in ["Admitted::judged(", "Admitted::unjudged_for_benchmarks(", "Admitted {"] {
                makers.extend(text.matches(needle).map(|_| format!("{} {needle}", path.display())));
            }
        }
    }
    let admit = read("gateway/admit.rs");
    assert_eq!(admit.matches("Admitted::judged(").count(), 1);
    assert!(admit.contains("async fn admit"));
    // The gateway's one call, and the constructors' own bodies in proxy.rs.
    let outside: Vec<&String> =
        makers.iter().filter(|m| !m.contains("/src/gateway/admit.rs ") && !m.contains("/src/proxy.rs ")).collect();
    assert!(outside.is_empty(), "{outside:?}");
    assert_eq!(read("proxy.rs").matches("Admitted {").count(), 2, "its two constructors");
}
