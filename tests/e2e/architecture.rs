//! The workspace's seams, checked from its sources and its dependency graph: what each crate
//! must not depend on (`docs/ARCHITECTURE.md` states these as absences), and that no crate's
//! top-level modules import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace, found from where the test runs rather than where it was compiled: a target
/// directory shared between checkouts may hold a test binary built in another one.
fn workspace() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().expect("the tests crate sits in the workspace").to_owned()
}

/// Every package in `crate_name`'s normal and build dependency graph, by name.
fn dependency_names(crate_name: &str, depth: Option<u32>) -> anyhow::Result<BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(workspace()).args([
        "tree",
        "--offline",
        "-p",
        crate_name,
        "-e",
        "normal,build",
        "--prefix",
        "none",
    ]);
    if let Some(depth) = depth {
        command.args(["--depth", &depth.to_string()]);
    }
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != crate_name)
        .map(str::to_owned)
        .collect())
}

/// The crates that must never appear under a library, and why.
const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    (
        "tongban-policy",
        &["tokio", "sqlx", "datafusion", "axum", "hyper"],
        "policy is pure rules, with no I/O",
    ),
    (
        "tongban-exchange",
        &["axum", "hyper", "tower", "tower-http", "rustls", "tokio-rustls", "tongban-platform", "sqlx"],
        "the log knows nothing of HTTP, TLS, the platform or its store",
    ),
    (
        "tongban-platform",
        &["axum", "hyper", "tower", "tower-http", "rustls", "tokio-rustls", "tongban-exchange", "datafusion"],
        "the platform knows nothing of HTTP, TLS, the exchange log or datasets' contents",
    ),
    (
        "tongban-connectors",
        &["axum", "hyper", "tower", "rustls", "tongban-exchange", "tongban-platform", "tongban-synth"],
        "connectors read data sources: they serve no HTTP, keep no log, hold no grants and generate nothing",
    ),
    ("tongban-synth", &["datafusion", "sqlx", "axum", "hyper"], "the generator only writes files"),
    (
        "tongban-cluster",
        &["tongban-platform", "tongban-exchange", "tongban-synth", "tongban-evidence", "tongban-gateway"],
        "the cluster runs the views it is sent: it holds no grants, keeps no log, signs nothing and generates nothing",
    ),
    (
        "tongban-evidence",
        &[
            "tokio",
            "axum",
            "hyper",
            "rustls",
            "sqlx",
            "datafusion",
            "tongban-exchange",
            "tongban-platform",
            "chrono",
        ],
        "evidence signs, hashes and encodes its own evidence: no I/O, no HTTP, no store, no exchange log format",
    ),
];

#[test]
fn libraries_do_not_depend_on_what_their_boundary_excludes() -> anyhow::Result<()> {
    let mut found = Vec::new();
    for (crate_name, forbidden, why) in FORBIDDEN {
        if !workspace().join(crate_name.trim_start_matches("tongban-")).join("Cargo.toml").exists() {
            anyhow::bail!("{crate_name} is named here but has no folder of its own");
        }
        let names = dependency_names(crate_name, None)?;
        for name in *forbidden {
            if names.contains(*name) {
                found.push(format!("{crate_name} depends on {name}, but {why}"));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    Ok(())
}

#[test]
fn the_generator_is_not_part_of_the_connectors() -> anyhow::Result<()> {
    // DataFusion and sqlx bring `rand` in for their own use; what matters is that the
    // connectors do not generate data themselves.
    let direct = dependency_names("tongban-connectors", Some(1))?;
    for name in ["rand", "rand_chacha", "rand_core"] {
        assert!(!direct.contains(name), "tongban-connectors depends on {name} directly");
    }
    Ok(())
}

/// The top-level modules of a crate whose sources are in `src`.
fn top_level_modules(src: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() || (path.extension().is_some_and(|e| e == "rs") && stem != "lib" && stem != "main") {
            modules.insert(stem);
        }
    }
    Ok(modules)
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The source a module compiles into the product: its unit tests (`#[cfg(test)] mod tests`,
/// at the end of a file by this workspace's convention) may reach anywhere and are cut off.
fn product_source(text: &str) -> &str {
    let mut offset = 0;
    let mut previous = "";
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if previous == "#[cfg(test)]" && trimmed.starts_with("mod tests") {
            return &text[..offset - previous.len() - 1];
        }
        if !trimmed.is_empty() {
            previous = trimmed;
        }
        offset += line.len();
    }
    text
}

/// The first path segment of every `crate::` path in `text`, with `crate::{a, b::c}` groups
/// opened; comments are skipped.
fn crate_paths(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let preceded_by_ident =
                rest[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
            rest = &rest[at + "crate::".len()..];
            if preceded_by_ident {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // Items of the group at its top level; a group spread over lines is read from
                // the whole text below.
                names.extend(group_heads(group));
            } else {
                names.push(identifier(rest));
            }
        }
    }
    // Multi-line `use crate::{` groups.
    let mut rest = text;
    while let Some(at) = rest.find("use crate::{") {
        rest = &rest[at + "use crate::{".len()..];
        names.extend(group_heads(rest));
    }
    names.retain(|n| !n.is_empty());
    names
}

fn identifier(text: &str) -> String {
    text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The leading identifier of each item in a `{…}` group, up to its closing brace.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if at_item_start && (c.is_alphanumeric() || c == '_') => {
                heads.push(identifier(&group[i..]));
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The modules that `module`'s files name through `crate::`, or through `super::` from the
/// module's own root file.
fn import_graph(src: &Path) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let modules = top_level_modules(src)?;
    let mut graph: BTreeMap<String, BTreeSet<String>> =
        modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    for file in files {
        let relative = file.strip_prefix(src)?;
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let first = parts.next().unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_owned();
        if !modules.contains(&module) {
            continue; // lib.rs and main.rs
        }
        let text = std::fs::read_to_string(&file)?;
        let product = product_source(&text);
        let mut named = crate_paths(product);
        // `super::x` in `foo.rs` or `foo/mod.rs` names the crate's top level.
        let is_root_file = relative.components().count() == 1
            || relative.ends_with("mod.rs") && relative.components().count() == 2;
        if is_root_file {
            let mut rest = product;
            while let Some(at) = rest.find("super::") {
                rest = &rest[at + "super::".len()..];
                if !rest.starts_with("super::") {
                    named.push(identifier(rest));
                }
            }
        }
        let edges = graph.entry(module.clone()).or_default();
        for name in named {
            if name != module && modules.contains(&name) {
                edges.insert(name);
            }
        }
    }
    Ok(graph)
}

/// The strongly connected groups of more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        groups: Vec<Vec<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for target in graph.get(node).into_iter().flatten() {
            let target = target.as_str();
            if !state.index.contains_key(target) {
                visit(state, target);
                let low = state.low[target].min(state.low[node]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.index[target].min(state.low[node]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut group = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                group.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                state.groups.push(group);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.groups
}

#[test]
fn no_crate_has_an_import_cycle_between_its_top_level_modules() -> anyhow::Result<()> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(workspace())? {
        let src = entry?.path().join("src");
        if !src.join("lib.rs").exists() && !src.join("main.rs").exists() {
            continue;
        }
        let graph = import_graph(&src)?;
        for group in cycles(&graph) {
            let edges: Vec<String> = group
                .iter()
                .flat_map(|from| {
                    graph[from].iter().filter(|to| group.contains(to)).map(move |to| format!("{from} → {to}"))
                })
                .collect();
            found.push(format!("{}: {}", src.display(), edges.join(", ")));
        }
    }
    assert!(found.is_empty(), "top-level modules that import each other in a circle:\n{}", found.join("\n"));
    Ok(())
}

#[test]
fn the_cycle_finder_finds_a_known_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("api", vec!["server"]),
        ("server", vec!["data"]),
        ("data", vec!["api", "policy"]),
        ("policy", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["api".to_owned(), "data".to_owned(), "server".to_owned()]]);
}

#[test]
fn crate_paths_opens_groups_and_skips_comments() {
    let text = "use crate::{api::x, data::{a, b}, error};\n// crate::server is only mentioned\nlet s = crate::store::open();\nuse crate::{\n    tls::Config,\n    metrics,\n};\n";
    let names: BTreeSet<String> = crate_paths(text).into_iter().collect();
    let want: BTreeSet<String> =
        ["api", "data", "error", "store", "tls", "metrics"].into_iter().map(str::to_owned).collect();
    assert_eq!(names, want);
}
