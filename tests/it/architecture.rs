//! The import graph follows the pipeline: each module of `src/` names only the modules
//! ARCHITECTURE.md allows it to (its table "may import"). Read from the source, so a new edge
//! against the flow fails here before it lands.

use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::{repo_root, rust_sources};

/// Module → the crate modules it may import. Kept equal to ARCHITECTURE.md's table.
const ALLOWED: &[(&str, &[&str])] = &[
    ("ids", &[]),
    ("permissions", &[]),
    ("config", &[]),
    ("telemetry", &["config"]),
    ("retry", &["config"]),
    ("inventory", &["config", "ids", "retry"]),
    ("events", &["config", "retry"]),
    ("lifecycle", &["config", "ids"]),
    ("observe", &["ids", "inventory", "lifecycle"]),
    ("store", &["ids", "lifecycle"]),
    (
        "notify",
        &["config", "ids", "lifecycle", "output", "retry", "store"],
    ),
    (
        "output",
        &[
            "config",
            "ids",
            "inventory",
            "lifecycle",
            "observe",
            "store",
        ],
    ),
    (
        "daemon",
        &[
            "config",
            "events",
            "ids",
            "inventory",
            "lifecycle",
            "notify",
            "observe",
            "output",
            "report",
            "store",
        ],
    ),
    ("report", &["lifecycle"]),
    // Fixtures for unit tests only; never compiled into the product.
    ("test_support", &["ids", "lifecycle"]),
];

/// Every `crate::<module>` named outside comments in `text`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `certsentinel::crate::` cannot occur; `$crate::` (macros) is not an import.
            if !name.is_empty() && !code[..i].ends_with('$') {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_against_the_flow() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let src = repo_root().join("src");
    let files = rust_sources(&src);
    let mut violations = Vec::new();
    let mut seen_modules = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        seen_modules.insert(module.clone());
        let Some(may) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "src/{} belongs to module `{module}`, which ARCHITECTURE.md's table does not list",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for named in named_modules(&text) {
            // Unit tests anywhere may use the shared fixtures; they are never in the product.
            let fixtures = named == "test_support";
            if named != module && !fixtures && !may.contains(&named.as_str()) {
                violations.push(format!(
                    "src/{} (module `{module}`) imports `crate::{named}`, against the flow",
                    relative.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    for module in allowed.keys() {
        assert!(
            seen_modules.contains(*module),
            "the table names `{module}`, which src/ does not have"
        );
    }
}

#[test]
fn the_reader_of_imports_sees_paths_and_ignores_comments() {
    let text = "use crate::ids::CertificateKey;\n// crate::daemon in a comment\nlet x = crate::store::Foo; // crate::notify\n";
    let found: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(found, vec!["ids", "store"]);
}
