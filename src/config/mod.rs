//! Configuration: load → (serde mirror in `file`) → `compile` into an immutable `Snapshot`.
//! Every problem found on the way becomes a `Diagnostic` with file, line, column and a hint.

pub mod compile;
pub mod diagnostic;
pub mod file;
pub mod reload;
pub mod value;

pub use diagnostic::{Diagnostic, Diagnostics, Reporter};

use file::FileConfig;
use serde::Deserialize;
use std::path::Path;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

const SECTIONS_HINT: &str =
    "top-level sections are [runtime], [admin], [log], [[listener]], [upstream.NAME], [cache.NAME] and [[route]]";

/// The text of a config and the name it is reported under.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Diagnostics> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source { name, text }),
            Err(e) => Err(Diagnostics(vec![Diagnostic {
                file: name,
                line: 0,
                column: 0,
                message: format!("cannot read config file: {e}"),
                hint: Some("check the path given with --config".into()),
            }])),
        }
    }

    pub fn inline(name: &str, text: &str) -> Source {
        Source {
            name: name.to_string(),
            text: text.to_string(),
        }
    }
}

/// Parses the TOML text into the file mirror, reporting every syntax and type error found.
pub fn parse(source: &Source) -> Result<FileConfig, Diagnostics> {
    let (cfg, found) = parse_partial(source)?;
    if found.is_empty() {
        Ok(cfg)
    } else {
        Err(Diagnostics(found))
    }
}

/// Parses and compiles, reporting the problems of both steps together: a section with a type
/// error is left out, and the rest is still checked.
pub fn load(
    source: &Source,
    rt: &crate::runtime::Runtime,
    generation: u64,
) -> Result<crate::snapshot::Snapshot, Diagnostics> {
    let (cfg, mut found) = parse_partial(source)?;
    match compile::compile(&cfg, source, rt, generation) {
        Ok(snap) if found.is_empty() => return Ok(snap),
        Ok(_) => {}
        Err(Diagnostics(more)) => found.extend(more),
    }
    found.sort_by_key(|d| (d.line, d.column));
    found.dedup();
    Err(Diagnostics(found))
}

/// The sections that parsed, and the diagnostics of those that did not. Syntax errors end
/// parsing (`Err`), since nothing after them can be trusted.
fn parse_partial(source: &Source) -> Result<(FileConfig, Vec<Diagnostic>), Diagnostics> {
    let mut rep = Reporter::new(&source.name, &source.text);
    let (root, syntax_errors) = DeTable::parse_recoverable(&source.text);
    for e in &syntax_errors {
        rep.error(
            e.span(),
            format!("TOML syntax: {}", e.message().trim()),
            Some("see https://toml.io for the syntax"),
        );
    }
    if !syntax_errors.is_empty() {
        return Err(Diagnostics(rep.found));
    }
    let mut cfg = FileConfig::default();
    for (key, value) in root.into_inner() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "runtime" => {
                if let Some(v) = section(&mut rep, value, "runtime") {
                    cfg.runtime = v;
                }
            }
            "admin" => cfg.admin = section(&mut rep, value, "admin"),
            "log" => {
                if let Some(v) = section(&mut rep, value, "log") {
                    cfg.log = v;
                }
            }
            "listener" => {
                cfg.listener_count = value.get_ref().as_array().map_or(1, |a| a.len());
                cfg.listeners = array_of(&mut rep, value, "listener");
            }
            "route" => cfg.routes = array_of(&mut rep, value, "route"),
            "upstream" => {
                for (name, up) in named_tables(&mut rep, value, "upstream") {
                    match up {
                        Ok(up) => {
                            cfg.upstreams.insert(name, up);
                        }
                        Err(()) => {
                            cfg.broken_upstreams.insert(name);
                        }
                    }
                }
            }
            "cache" => {
                for (name, zone) in named_tables(&mut rep, value, "cache") {
                    if let Ok(zone) = zone {
                        cfg.caches.insert(name, zone);
                    }
                }
            }
            other => rep.error(
                Some(key_span),
                format!("unknown section `{other}`"),
                Some(SECTIONS_HINT),
            ),
        }
    }
    Ok((cfg, rep.found))
}

/// `[KIND.NAME]` tables: each parsed on its own (`Err` = its error was reported).
fn named_tables<'de, T: Deserialize<'de>>(
    rep: &mut Reporter,
    value: Spanned<DeValue<'de>>,
    kind: &str,
) -> Vec<(String, Result<Spanned<T>, ()>)> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(t) => t
            .into_iter()
            .map(|(name, v)| {
                let span = v.span();
                let parsed = section(rep, v, kind).map(|x| Spanned::new(span, x)).ok_or(());
                (name.get_ref().to_string(), parsed)
            })
            .collect(),
        _ => {
            rep.error(
                Some(span),
                format!("`{kind}` must be a table of named sections"),
                Some(&format!("write [{kind}.NAME] followed by its keys")),
            );
            Vec::new()
        }
    }
}

/// Deserializes one section, recording its error (with the span serde reports) on failure.
fn section<'de, T: Deserialize<'de>>(rep: &mut Reporter, value: Spanned<DeValue<'de>>, what: &str) -> Option<T> {
    let fallback = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            let hint = format!("see the [{what}] section of docs/configuration.md");
            rep.error(e.span().or(Some(fallback)), e.message().trim().to_string(), Some(&hint));
            None
        }
    }
}

fn array_of<'de, T: Deserialize<'de>>(rep: &mut Reporter, value: Spanned<DeValue<'de>>, what: &str) -> Vec<Spanned<T>> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let span = item.span();
                section(rep, item, what).map(|v| Spanned::new(span, v))
            })
            .collect(),
        _ => {
            rep.error(
                Some(span),
                format!("`{what}` must be an array of tables"),
                Some(&format!("write [[{what}]] for each entry")),
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests;
