//! Scenario files (`docs/scenario-files.md`): the SDK's serde-derived [`ScenarioFile`], read
//! from JSON or TOML, so one file tests a plugin written in any language.

use std::collections::HashSet;
use std::path::Path;

use factline_guest::scenario::ScenarioFile;

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

fn parse_json(text: &str) -> Result<ScenarioFile, ParseFailure> {
    serde_json::from_str(text).map_err(|e| (e.line(), e.column(), e.to_string()))
}

fn parse_toml(text: &str) -> Result<ScenarioFile, ParseFailure> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        (line, column, e.message().trim().to_owned())
    })
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
        // The span is the scenario holding the typo (its `[[scenarios]]` line).
        assert!(
            e.contains("s.toml:4:1: ") && e.contains("command_typ"),
            "{e}"
        );

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
