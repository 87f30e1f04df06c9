//! Scenario files (`docs/scenario-files.md`): the SDK's serde-derived [`ScenarioFile`], read
//! from JSON or TOML, so one file tests a plugin written in any language.

use std::collections::HashSet;
use std::path::Path;

use factline_guest::scenario::{
    AggregateScenario, PolicyScenario, ProjectorScenario, SagaScenario, Scenario, ScenarioFile,
};

/// Why a scenario file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioFileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: a scenario file ends in .json or .toml")]
    UnknownFormat { path: String },
    #[error("{path}: the file holds no scenarios")]
    Empty { path: String },
    #[error("{path}: two scenarios are named `{name}`; names identify them in reports")]
    DuplicateName { path: String, name: String },
}

/// Reads and checks a scenario file; the format follows the extension.
pub fn load(path: &Path) -> Result<ScenarioFile, ScenarioFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioFileError::Io {
        path: shown.clone(),
        source,
    })?;
    let file = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => parse_json(&text),
        Some("toml") => parse_toml(&text),
        _ => return Err(ScenarioFileError::UnknownFormat { path: shown }),
    }
    .map_err(|(line, column, message)| ScenarioFileError::Parse {
        path: shown.clone(),
        line,
        column,
        message,
    })?;
    if file.scenarios.is_empty() {
        return Err(ScenarioFileError::Empty { path: shown });
    }
    let mut names = HashSet::new();
    if let Some(twice) = file.scenarios.iter().find(|s| !names.insert(s.name())) {
        return Err(ScenarioFileError::DuplicateName {
            path: shown,
            name: twice.name().to_owned(),
        });
    }
    Ok(file)
}

type ParseFailure = (usize, usize, String);

const KINDS: &[&str] = &["aggregate", "projector", "policy", "saga"];

/// One scenario of kind `kind` (its `kind` key removed) from `d`. The kind is dispatched here
/// rather than by serde's internally tagged enum, which buffers the scenario and so loses
/// where in it an error is (the format's deserializer then points at the whole scenario).
fn scenario_of_kind<'de, D: serde::Deserializer<'de>>(
    kind: &str,
    d: D,
) -> Result<Scenario, D::Error> {
    use serde::Deserialize;
    Ok(match kind {
        "aggregate" => Scenario::Aggregate(AggregateScenario::deserialize(d)?),
        "projector" => Scenario::Projector(ProjectorScenario::deserialize(d)?),
        "policy" => Scenario::Policy(PolicyScenario::deserialize(d)?),
        "saga" => Scenario::Saga(SagaScenario::deserialize(d)?),
        other => return Err(serde::de::Error::unknown_variant(other, KINDS)),
    })
}

/// JSON: serde_json's own position; on an error inside a scenario, the scenario is read again
/// on its own so the message names the key path (`scenarios[0].when: unknown field ...`).
fn parse_json(text: &str) -> Result<ScenarioFile, ParseFailure> {
    serde_json::from_str(text).map_err(|e| {
        let detail = json_scenario_error(text).unwrap_or_else(|| e.to_string());
        (e.line(), e.column(), detail)
    })
}

fn json_scenario_error(text: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
    let scenarios = value.get_mut("scenarios")?.as_array_mut()?;
    for (i, scenario) in scenarios.iter_mut().enumerate() {
        let object = scenario.as_object_mut()?;
        let name = object
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned);
        let at = match &name {
            Some(name) => format!("scenarios[{i}] (`{name}`)"),
            None => format!("scenarios[{i}]"),
        };
        let Some(kind) = object.remove("kind") else {
            return Some(format!("{at}: missing `kind` ({})", KINDS.join(", ")));
        };
        let Some(kind) = kind.as_str() else {
            return Some(format!("{at}.kind: expected one of {}", KINDS.join(", ")));
        };
        let mut track = serde_path_to_error::Track::new();
        let result = scenario_of_kind(
            kind,
            serde_path_to_error::Deserializer::new(scenario.take(), &mut track),
        );
        if let Err(e) = result {
            let path = track.path().to_string();
            let inner = e.to_string();
            // The path may end at the parent of an unknown key, or at the key itself.
            let key = unknown_key(&inner).filter(|key| path.rsplit('.').next() != Some(*key));
            let place = match (path.as_str(), key) {
                (".", Some(key)) => format!("{at}.{key}"),
                (".", None) => at,
                (path, Some(key)) => format!("{at}.{path}.{key}"),
                (path, None) => format!("{at}.{path}"),
            };
            return Some(format!("{place}: {inner}"));
        }
    }
    None
}

/// The key of serde's "unknown field `x`" message.
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(key, _)| key)
}

/// TOML: the document is parsed with spans, and each scenario is deserialized from its own
/// spanned table, so an error points at the offending key or value.
fn parse_toml(text: &str) -> Result<ScenarioFile, ParseFailure> {
    use serde::de::IntoDeserializer;
    use toml::de::{DeTable, DeValue};
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = line_column(text, span.start);
        (line, column, message)
    };
    let doc = DeTable::parse(text)
        .map_err(|e| at(e.span().unwrap_or(0..0), e.message().trim().to_owned()))?;
    let mut file = ScenarioFile {
        description: String::new(),
        scenarios: Vec::new(),
    };
    let mut seen_scenarios = false;
    for (key, value) in doc.into_inner() {
        let value_span = value.span();
        match (key.get_ref().as_ref(), value.into_inner()) {
            ("description", DeValue::String(d)) => file.description = d.into_owned(),
            ("description", _) => return Err(at(value_span, "`description` is a string".into())),
            ("scenarios", DeValue::Array(items)) => {
                seen_scenarios = true;
                for item in items {
                    let span = item.span();
                    let DeValue::Table(table) = item.into_inner() else {
                        return Err(at(span, "a scenario is a table".into()));
                    };
                    let mut kind = None;
                    let mut rest = DeTable::new();
                    for (k, v) in table {
                        if k.get_ref().as_ref() == "kind" {
                            kind = Some(v);
                        } else {
                            rest.insert(k, v);
                        }
                    }
                    let Some(kind) = kind else {
                        return Err(at(span, format!("missing `kind` ({})", KINDS.join(", "))));
                    };
                    let kind_span = kind.span();
                    let DeValue::String(kind) = kind.into_inner() else {
                        return Err(at(
                            kind_span,
                            format!("`kind` is one of {}", KINDS.join(", ")),
                        ));
                    };
                    if !KINDS.contains(&kind.as_ref()) {
                        return Err(at(
                            kind_span,
                            format!(
                                "unknown kind `{kind}`, expected one of {}",
                                KINDS.join(", ")
                            ),
                        ));
                    }
                    let table = toml::Spanned::new(span.clone(), DeValue::Table(rest));
                    let scenario =
                        scenario_of_kind(&kind, table.into_deserializer()).map_err(|e| {
                            at(
                                e.span().unwrap_or(span.clone()),
                                e.message().trim().to_owned(),
                            )
                        })?;
                    file.scenarios.push(scenario);
                }
            }
            ("scenarios", _) => {
                return Err(at(
                    value_span,
                    "`scenarios` is an array of tables ([[scenarios]])".into(),
                ));
            }
            (other, _) => {
                return Err(at(
                    key.span(),
                    format!("unknown key `{other}`, expected `description` or `scenarios`"),
                ));
            }
        }
    }
    if !seen_scenarios {
        return Err((1, 1, "missing `scenarios`".into()));
    }
    Ok(file)
}

/// 1-based line and column of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use factline_guest::scenario::Scenario;

    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const TOML: &str = r#"
description = "counter"

[[scenarios]]
kind = "aggregate"
name = "increments"
stream = "counter-1"
given = [{ event_type = "counter.incremented", payload = { by = 2 } }]
when = { command_type = "increment", payload = { by = 3 } }
then = { outcome = "events", events = [{ event_type = "counter.incremented", payload = { by = 3 } }], version = 2 }

[[scenarios]]
kind = "projector"
name = "a row"
given = [{ event_type = "counter.incremented", stream = "counter-1", payload = { by = 2 } }]
then = [{ key = "counter-1", value = { total = 2 } }, { key = "counter-2" }]
"#;

    #[test]
    fn toml_and_json_read_the_same_scenarios() {
        let (_d, toml_path) = write("s.toml", TOML);
        let from_toml = load(&toml_path).unwrap();
        assert_eq!(from_toml.scenarios.len(), 2);
        let Scenario::Projector(p) = &from_toml.scenarios[1] else {
            panic!("{from_toml:?}")
        };
        assert_eq!(p.then[1].value, None);
        let (_d, json_path) = write("s.json", &serde_json::to_string(&from_toml).unwrap());
        assert_eq!(load(&json_path).unwrap(), from_toml);
    }

    #[test]
    fn errors_name_the_file_and_the_place() {
        let typo = TOML.replace("command_type", "command_typ");
        let (_d, path) = write("s.toml", &typo);
        let e = load(&path).unwrap_err().to_string();
        // The span is the key itself, not the scenario holding it.
        assert!(
            e.contains("s.toml:9:10: ") && e.contains("command_typ"),
            "{e}"
        );
        let (_d, path) = write(
            "s.toml",
            &TOML.replace("kind = \"projector\"", "kind = \"workflow\""),
        );
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("s.toml:13:8: unknown kind `workflow`"), "{e}");

        let (_d, path) = write("s.json", "{\"scenarios\": [\n  {\"kind\": \"workflow\"}]}");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("s.json:2:") && e.contains("workflow"), "{e}");

        let (_d, path) = write("s.json", "{\"scenarios\": []}");
        assert!(matches!(load(&path), Err(ScenarioFileError::Empty { .. })));

        let twice = TOML.replace("name = \"a row\"", "name = \"increments\"");
        let (_d, path) = write("s.toml", &twice);
        assert!(matches!(
            load(&path),
            Err(ScenarioFileError::DuplicateName { name, .. }) if name == "increments"
        ));

        let (_d, path) = write("s.yaml", "");
        assert!(matches!(
            load(&path),
            Err(ScenarioFileError::UnknownFormat { .. })
        ));
        assert!(matches!(
            load("/nonexistent/s.json".as_ref()),
            Err(ScenarioFileError::Io { .. })
        ));
    }
}
