//! The layering check: no module cycle inside any crate of the workspace.
//!
//! Cargo already refuses a cycle between crates. Inside a crate nothing does, so this test
//! reads every crate's sources and builds, for each module, the graph of its child modules: an
//! edge `a -> b` when code under `a` names a path under its sibling `b` (`crate::…::b` or
//! `super::b`). A cycle in any of these graphs fails the test and is printed.
//!
//! Test-only code is left out: modules declared under `#[cfg(test)]` (or a test feature) and
//! the inline `#[cfg(test)] mod tests { … }` blocks, since tests may reach across layers.
//! Comments are left out too: a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Source roots checked: each crate's `src`.
fn crate_roots() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![root.join("src")];
    let mut crates: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("src"))
                .collect()
        })
        .unwrap_or_default();
    crates.sort();
    roots.extend(crates.into_iter().filter(|p| p.is_dir()));
    roots.push(root.join("ops/jepsen/src"));
    roots
}

/// Module path of a source file relative to its crate's `src`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Child modules a file declares under a test-only `cfg`.
fn test_only_children(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    for w in lines.windows(2) {
        let cfg = w[0];
        let test_only = cfg.starts_with("#[cfg(test)]")
            || (cfg.starts_with("#[cfg(any(test") && !cfg.contains("not("));
        if !test_only {
            continue;
        }
        let decl = w[1]
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ");
        if let Some(rest) = decl.strip_prefix("mod ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if rest[name.len()..].trim_start().starts_with(';') {
                out.insert(name);
            }
        }
    }
    out
}

/// The code of a file without comments and without its inline `#[cfg(test)] mod … { … }`
/// block (by convention the last item of a file).
fn production_code(code: &str) -> String {
    let mut out = String::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|n| n.trim().starts_with("mod ") && n.trim().ends_with('{'))
        {
            break;
        }
        let code_part = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code_part);
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Absolute module paths (first one or two segments are enough) that `code` in module `here`
/// refers to.
fn references(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if after.starts_with('{') {
            let end = after.find('}').unwrap_or(after.len());
            for item in after[1..end].split(',') {
                let path: Vec<String> = item.trim().split("::").map(ident_at).collect();
                if path.first().is_some_and(|p| !p.is_empty()) {
                    out.push(path);
                }
            }
        } else {
            let path: Vec<String> = after
                .split("::")
                .map(ident_at)
                .take_while(|s| !s.is_empty())
                .take(4)
                .collect();
            if !path.is_empty() {
                out.push(path);
            }
        }
        rest = after;
    }
    // `super::x` in module a::b (`a/b.rs`) names a::x; in module a (`a/mod.rs`) names x.
    let parent: Vec<String> = here[..here.len().saturating_sub(1)].to_vec();
    let mut rest = code;
    while let Some(i) = rest.find("super::") {
        let before_ok = i == 0 || !rest[..i].ends_with("::");
        let after = &rest[i + "super::".len()..];
        let name = ident_at(after);
        if before_ok && !name.is_empty() && name != "super" {
            let mut p = parent.clone();
            p.push(name);
            out.push(p);
        }
        rest = after;
    }
    out
}

/// Cycles of a directed graph (one per strongly connected component of two or more nodes).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: Vec<&String> = graph.keys().collect();
    let mut found = Vec::new();
    let mut seen_in_cycle: BTreeSet<String> = BTreeSet::new();
    for start in nodes {
        if seen_in_cycle.contains(start) {
            continue;
        }
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut visited = BTreeSet::new();
        while let Some((n, path)) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    seen_in_cycle.extend(path.iter().cloned());
                    found.push(cycle);
                    stack.clear();
                    break;
                }
                if visited.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_cycle_in_any_crate() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for src in crate_roots() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        // Test-only modules, by path.
        let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
        for f in &files {
            let code = fs::read_to_string(f).unwrap_or_default();
            let here = module_path(&src, f);
            for child in test_only_children(&code) {
                let mut p = here.clone();
                p.push(child);
                test_only.insert(p);
            }
        }
        // Edges between siblings, keyed by their parent module.
        let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for f in &files {
            let here = module_path(&src, f);
            if test_only.iter().any(|t| here.starts_with(t)) {
                continue;
            }
            let code = production_code(&fs::read_to_string(f).unwrap_or_default());
            checked += 1;
            for target in references(&code, &here) {
                let common = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
                let (Some(from), Some(to)) = (here.get(common), target.get(common)) else {
                    continue; // a module naming its own ancestor or descendant
                };
                let parent = here[..common].to_vec();
                // Only edges to modules that exist (not to items such as `crate::Foo`).
                let mut target_mod = parent.clone();
                target_mod.push(to.clone());
                let exists = files
                    .iter()
                    .any(|g| module_path(&src, g).starts_with(&target_mod));
                if !exists || test_only.contains(&target_mod) {
                    continue;
                }
                graphs
                    .entry(parent)
                    .or_default()
                    .entry(from.clone())
                    .or_default()
                    .insert(to.clone());
            }
        }
        for (parent, graph) in &graphs {
            for cycle in cycles(graph) {
                let at = if parent.is_empty() {
                    "crate root".to_string()
                } else {
                    parent.join("::")
                };
                problems.push(format!(
                    "{}: in {at}: {}",
                    src.display(),
                    cycle.join(" -> ")
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "the check read only {checked} files: wrong paths?"
    );
    assert!(
        problems.is_empty(),
        "module cycles (a lower module must not name a higher one):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("d".into()).or_default().insert("a".into());
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c", "a"]]);
    g.get_mut("c").map(|s| s.remove("a"));
    assert!(cycles(&g).is_empty());
    // References are read from `use` lists and from `super::`.
    let here = vec!["coordinator".to_string(), "put".to_string()];
    let refs = references(
        "use crate::{node::Node, replica::copy};\nuse super::get::x;\n",
        &here,
    );
    assert!(refs.contains(&vec!["node".to_string(), "Node".to_string()]));
    assert!(refs.contains(&vec!["replica".to_string(), "copy".to_string()]));
    assert!(refs.contains(&vec!["coordinator".to_string(), "get".to_string()]));
}
