//! Point 2 and 11: every configuration key is documented, and every example config is valid.

use std::collections::BTreeSet;
use std::process::Command;

/// Field names of the config file structs (`pub NAME:` lines in src/config/file/*.rs).
fn config_keys() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/file");
    let mut keys = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut rename: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(r) = line.strip_prefix("#[serde(rename = \"") {
                rename = r.split('"').next().map(str::to_string);
            } else if let Some(field) = line
                .strip_prefix("pub ")
                .and_then(|l| l.split_once(':'))
                .map(|(n, _)| n)
            {
                if !field.contains(' ') && !field.contains('(') {
                    keys.insert(rename.take().unwrap_or_else(|| field.to_string()));
                }
            }
        }
    }
    // Internal bookkeeping fields of the assembled file, not TOML keys.
    for internal in [
        "listeners",
        "upstreams",
        "routes",
        "caches",
        "broken_upstreams",
        "listener_count",
        "matcher",
    ] {
        keys.remove(internal);
    }
    keys
}

#[test]
fn every_config_key_is_documented() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let keys = config_keys();
    assert!(keys.len() > 40, "found only {keys:?}");
    // A key counts as documented when the reference names it: `key`, [key], or `key = ...` in
    // the description of an inline table.
    let named = |k: &str| {
        [
            format!("`{k}`"),
            format!("[{k}]"),
            format!("{{ {k} ="),
            format!(", {k} ="),
        ]
        .iter()
        .any(|p| docs.contains(p.as_str()))
    };
    let missing: Vec<&String> = keys.iter().filter(|k| !named(k)).collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/configuration.md: {missing:?}"
    );
}

#[test]
fn example_configs_pass_check() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let pki = crate::harness::tls::Pki::new();
    pki.issue("a", &["a.test"]);
    pki.issue("b", &["b.test"]);
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        // Copy next to the test certificates, which examples refer to as a.pem, b.pem, ...
        let copy = pki.dir.join(path.file_name().unwrap());
        std::fs::copy(&path, &copy).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_frontdesk"))
            .args(["check", "--config", copy.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 2);
}
