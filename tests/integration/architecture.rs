//! The layering of ARCHITECTURE.md, checked: each crate depends only on the crates its row
//! allows, and inside every crate the modules import each other without a cycle (`crate::x` and
//! `super::x` paths outside test modules, brace imports included).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// The crates and the radbridge crates each may depend on (ARCHITECTURE.md, "Allowed dependencies").
const ALLOWED: &[(&str, &[&str])] = &[
    ("crates/radbridge-volume", &[]),
    ("crates/radbridge-model", &["radbridge-volume"]),
    ("crates/radbridge-store", &["radbridge-volume", "radbridge-model"]),
    ("crates/radbridge-report", &["radbridge-volume", "radbridge-model", "radbridge-store"]),
    ("crates/radbridge-train", &["radbridge-volume", "radbridge-model", "radbridge-pacs"]),
    ("crates/radbridge-pacs", &["radbridge-volume"]),
    (
        "crates/radbridge-cli",
        &["radbridge-volume", "radbridge-model", "radbridge-store", "radbridge-report", "radbridge-train", "radbridge-pacs"],
    ),
    ("src-tauri", &["radbridge-volume", "radbridge-model", "radbridge-store", "radbridge-report", "radbridge-pacs"]),
];

#[test]
fn crates_depend_only_on_the_layers_below_them() {
    for (dir, allowed) in ALLOWED {
        let toml = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
        let mut section = String::new();
        for line in toml.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if !section.contains("dependencies") {
                continue;
            }
            let name = line.split(['.', '=', ' ']).next().unwrap_or("");
            if name.starts_with("radbridge-") {
                assert!(allowed.contains(&name), "{dir}/Cargo.toml: {name} is not a layer below {dir} (ARCHITECTURE.md)");
            }
        }
    }
}

#[test]
fn no_crate_has_a_module_cycle() {
    for (dir, _) in ALLOWED {
        let src = root().join(dir).join("src");
        let modules = modules_of(&src);
        let names: BTreeSet<String> = modules.keys().cloned().collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (m, text) in &modules {
            for target in imports(m, text, &names) {
                edges.entry(m.clone()).or_default().insert(target);
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            panic!("{dir}: modules import each other in a circle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let names: BTreeSet<String> = ["a", "b", "c", "c::d"].iter().map(|s| s.to_string()).collect();
    let a = imports("a", "use crate::{b::X, c::d::Y};", &names);
    assert_eq!(a, BTreeSet::from(["b".to_string(), "c::d".to_string()]));
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.insert("a".into(), a);
    edges.insert("c::d".into(), imports("c::d", "use super::super::a::Z;", &names));
    assert_eq!(edges["c::d"], BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&edges), Some(vec!["a".to_string(), "c::d".to_string(), "a".to_string()]));
    edges.remove("c::d");
    assert_eq!(find_cycle(&edges), None);
    // Test modules are left out (they may use anything).
    assert!(imports("b", "fn f() {}\n#[cfg(test)]\nmod tests { use crate::a; }", &names).is_empty());
}

/// Module path (`""` for the crate root, `a::b`) → its source text.
fn modules_of(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                out.insert(parts.join("::"), std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    out
}

/// The modules of `names` that `module`'s non-test code names through `crate::` or `super::`.
fn imports(module: &str, text: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let here: Vec<&str> = if module.is_empty() { vec![] } else { module.split("::").collect() };
    let mut out = BTreeSet::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", here[..here.len().saturating_sub(1)].to_vec())] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') && prefix == "super::" {
                continue; // the second `super::` of `super::super::` is handled below
            }
            let mut base = base.clone();
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                base.pop();
                tail = t;
            }
            for path in expand(tail) {
                let mut full: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                full.extend(path);
                // The longest prefix that is a module of the crate.
                for k in (1..=full.len()).rev() {
                    let cand = full[..k].join("::");
                    if names.contains(&cand) {
                        if cand != module && !module.starts_with(&format!("{cand}::")) && !cand.starts_with(&format!("{module}::")) {
                            out.insert(cand);
                        }
                        break;
                    }
                }
            }
        }
    }
    out
}

/// The paths at the start of `s`: `a::b::C` or one level of braces, `{a::X, b}`.
fn expand(s: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let path = |s: &str| {
        let mut parts = Vec::new();
        let mut rest = s.trim_start();
        loop {
            let id = ident(rest);
            if id.is_empty() {
                break;
            }
            rest = &rest[id.len()..];
            parts.push(id);
            match rest.strip_prefix("::") {
                Some(r) if !r.starts_with('{') => rest = r,
                _ => break,
            }
        }
        parts
    };
    if let Some(inner) = s.strip_prefix('{') {
        let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
        inner.split(',').map(path).filter(|p| !p.is_empty()).collect()
    } else {
        vec![path(s)]
    }
}

/// A cycle in the graph, as a path that returns to its start.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        stack.push(v.to_string());
        for w in edges.get(v).into_iter().flatten() {
            match state.get(w.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == w).expect("on the stack");
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(w.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(w, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in edges.keys() {
        if state.get(v.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(v, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}
