//! The schema registry: every JSON Schema in `schemas/`, by stable id and semantic version,
//! compiled once at start.
//!
//! Files are named `<name>.v<major>.json` and carry `"$id": "flotilla.<name>/<x.y.z>"`.
//! They are compiled into the binary, so the server, the files and `GET /v1/schemas`
//! never disagree. A released version is never edited: a compatible change is a new
//! minor version in the same file; an incompatible one is a new file.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{compile, SchemaError};

/// The schema files, compiled into the binary.
pub const FILES: &[(&str, &str)] = &[
    (
        "run-request.v1.json",
        include_str!("../../../schemas/run-request.v1.json"),
    ),
    (
        "run-request.v2.json",
        include_str!("../../../schemas/run-request.v2.json"),
    ),
    (
        "task-batch.v1.json",
        include_str!("../../../schemas/task-batch.v1.json"),
    ),
    (
        "task-batch-result.v1.json",
        include_str!("../../../schemas/task-batch-result.v1.json"),
    ),
    (
        "manifest.v1.json",
        include_str!("../../../schemas/manifest.v1.json"),
    ),
    (
        "manifest.v2.json",
        include_str!("../../../schemas/manifest.v2.json"),
    ),
    (
        "agent-message.v1.json",
        include_str!("../../../schemas/agent-message.v1.json"),
    ),
    (
        "agent-message.v2.json",
        include_str!("../../../schemas/agent-message.v2.json"),
    ),
    (
        "approval-decision.v1.json",
        include_str!("../../../schemas/approval-decision.v1.json"),
    ),
    (
        "approval-request.v1.json",
        include_str!("../../../schemas/approval-request.v1.json"),
    ),
    (
        "approvals.v1.json",
        include_str!("../../../schemas/approvals.v1.json"),
    ),
    (
        "canary-report.v1.json",
        include_str!("../../../schemas/canary-report.v1.json"),
    ),
    (
        "drift-report.v1.json",
        include_str!("../../../schemas/drift-report.v1.json"),
    ),
    (
        "guard-mode-change.v1.json",
        include_str!("../../../schemas/guard-mode-change.v1.json"),
    ),
    (
        "guard-view.v1.json",
        include_str!("../../../schemas/guard-view.v1.json"),
    ),
    (
        "handles-state.v1.json",
        include_str!("../../../schemas/handles-state.v1.json"),
    ),
    (
        "handle-view.v1.json",
        include_str!("../../../schemas/handle-view.v1.json"),
    ),
    (
        "instances.v1.json",
        include_str!("../../../schemas/instances.v1.json"),
    ),
    (
        "fleet-view.v1.json",
        include_str!("../../../schemas/fleet-view.v1.json"),
    ),
    (
        "queue-view.v1.json",
        include_str!("../../../schemas/queue-view.v1.json"),
    ),
    (
        "task-page.v1.json",
        include_str!("../../../schemas/task-page.v1.json"),
    ),
    (
        "rollout-decision.v1.json",
        include_str!("../../../schemas/rollout-decision.v1.json"),
    ),
    (
        "rollout-review-request.v1.json",
        include_str!("../../../schemas/rollout-review-request.v1.json"),
    ),
    (
        "rollout-change.v1.json",
        include_str!("../../../schemas/rollout-change.v1.json"),
    ),
    (
        "rollout-review.v1.json",
        include_str!("../../../schemas/rollout-review.v1.json"),
    ),
    (
        "rollout-view.v1.json",
        include_str!("../../../schemas/rollout-view.v1.json"),
    ),
    (
        "rollout-manifest.v1.json",
        include_str!("../../../schemas/rollout-manifest.v1.json"),
    ),
    (
        "report.v1.json",
        include_str!("../../../schemas/report.v1.json"),
    ),
    (
        "observer-token.v1.json",
        include_str!("../../../schemas/observer-token.v1.json"),
    ),
    (
        "alert-list.v1.json",
        include_str!("../../../schemas/alert-list.v1.json"),
    ),
    (
        "alert-notification.v1.json",
        include_str!("../../../schemas/alert-notification.v1.json"),
    ),
    (
        "observer-frame.v1.json",
        include_str!("../../../schemas/observer-frame.v1.json"),
    ),
    (
        "problem.v1.json",
        include_str!("../../../schemas/problem.v1.json"),
    ),
    (
        "run-metrics.v1.json",
        include_str!("../../../schemas/run-metrics.v1.json"),
    ),
    (
        "server-message.v1.json",
        include_str!("../../../schemas/server-message.v1.json"),
    ),
    (
        "server-message.v2.json",
        include_str!("../../../schemas/server-message.v2.json"),
    ),
    (
        "readiness.v1.json",
        include_str!("../../../schemas/readiness.v1.json"),
    ),
    (
        "summary.v1.json",
        include_str!("../../../schemas/summary.v1.json"),
    ),
    (
        "task-accepted.v1.json",
        include_str!("../../../schemas/task-accepted.v1.json"),
    ),
    (
        "task-list.v1.json",
        include_str!("../../../schemas/task-list.v1.json"),
    ),
    (
        "task-view.v1.json",
        include_str!("../../../schemas/task-view.v1.json"),
    ),
    (
        "validation-mode-switch.v1.json",
        include_str!("../../../schemas/validation-mode-switch.v1.json"),
    ),
];

/// One schema version.
pub struct Entry {
    pub id: String,
    pub version: String,
    pub file: &'static str,
    pub title: String,
    /// The schema document as published.
    pub document: Value,
    pub validator: jsonschema::Validator,
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lookup {
    #[error("no schema {0:?}; known: {1}")]
    UnknownId(String, String),
    #[error("{id} has no version {version:?}; supported: {supported}")]
    UnknownVersion {
        id: String,
        version: String,
        supported: String,
    },
}

/// A schema and its versions, as `GET /v1/schemas` lists them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub id: String,
    pub title: String,
    pub versions: Vec<String>,
    pub latest: String,
}

pub struct Registry {
    /// By id, then by version (semantic order).
    entries: BTreeMap<String, Vec<Entry>>,
}

/// `x.y.z` as numbers, for ordering.
fn semver(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

impl Registry {
    /// Compiles every schema file; a file that does not compile, or whose `$id` does not
    /// match its name, is a build bug caught by the unit tests.
    pub fn new() -> Result<Self, SchemaError> {
        let mut entries: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (file, text) in FILES {
            let document: Value = serde_json::from_str(text).map_err(|e| SchemaError {
                name: file,
                detail: e.to_string(),
            })?;
            let full = document["$id"].as_str().unwrap_or_default();
            let (id, version) = full.split_once('/').ok_or_else(|| SchemaError {
                name: file,
                detail: format!("$id {full:?} is not <id>/<version>"),
            })?;
            let (stem, major) = file
                .trim_end_matches(".json")
                .rsplit_once(".v")
                .unwrap_or_default();
            if id != format!("flotilla.{stem}") || !version.starts_with(&format!("{major}.")) {
                return Err(SchemaError {
                    name: file,
                    detail: format!("$id {full:?} does not match the file name"),
                });
            }
            entries.entry(id.to_owned()).or_default().push(Entry {
                id: id.to_owned(),
                version: version.to_owned(),
                file,
                title: document["title"].as_str().unwrap_or(id).to_owned(),
                validator: compile(file, text)?,
                document,
            });
        }
        for versions in entries.values_mut() {
            versions.sort_by_key(|e| semver(&e.version));
        }
        Ok(Self { entries })
    }

    pub fn list(&self) -> Vec<Summary> {
        self.entries
            .iter()
            .map(|(id, versions)| Summary {
                id: id.clone(),
                title: versions.last().map(|e| e.title.clone()).unwrap_or_default(),
                versions: versions.iter().map(|e| e.version.clone()).collect(),
                latest: versions
                    .last()
                    .map(|e| e.version.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Every version, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().flatten()
    }

    /// A schema by id, at `version` (`x.y.z`, or a major `x` for its latest) or its latest.
    pub fn get(&self, id: &str, version: Option<&str>) -> Result<&Entry, Lookup> {
        let versions = self.entries.get(id).ok_or_else(|| {
            Lookup::UnknownId(
                id.to_owned(),
                self.entries.keys().cloned().collect::<Vec<_>>().join(", "),
            )
        })?;
        let found = match version {
            None => versions.last(),
            Some(v) if !v.contains('.') => versions
                .iter()
                .rev()
                .find(|e| e.version.split('.').next() == Some(v)),
            // A file holds every minor version of its major (a compatible change adds to
            // it), so an older minor is checked against the file that carries it.
            Some(v) => versions.iter().find(|e| {
                let (want, have) = (semver(v), semver(&e.version));
                e.version == v || (want.0 == have.0 && want <= have && v.split('.').count() == 3)
            }),
        };
        found.ok_or_else(|| Lookup::UnknownVersion {
            id: id.to_owned(),
            version: version.unwrap_or_default().to_owned(),
            supported: self.supported(id),
        })
    }

    /// The versions of `id`, comma-separated.
    pub fn supported(&self, id: &str) -> String {
        self.entries
            .get(id)
            .map(|v| {
                v.iter()
                    .map(|e| e.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_is_registered_and_compiles() {
        let reg = Registry::new().unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas");
        let on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        for name in &on_disk {
            assert!(
                reg.entries().any(|e| e.file == name),
                "schemas/{name} is not in registry::FILES"
            );
        }
        assert_eq!(reg.entries().count(), on_disk.len());
    }

    #[test]
    fn lookups_by_version_and_their_errors() {
        let reg = Registry::new().unwrap();
        let id = "flotilla.run-request";
        assert_eq!(reg.get(id, None).unwrap().version, "2.2.0");
        // An older minor of a major is read by the file of that major.
        assert_eq!(reg.get(id, Some("2.0.0")).unwrap().version, "2.2.0");
        assert!(reg.get(id, Some("2.3.0")).is_err());
        assert_eq!(reg.get(id, Some("1")).unwrap().version, "1.2.0");
        assert_eq!(
            reg.get(id, Some("1.2.0")).unwrap().file,
            "run-request.v1.json"
        );
        let Err(err) = reg.get(id, Some("3.0.0")) else {
            panic!("3.0.0 does not exist")
        };
        assert_eq!(
            err.to_string(),
            "flotilla.run-request has no version \"3.0.0\"; supported: 1.2.0, 2.2.0"
        );
        assert!(matches!(
            reg.get("flotilla.nope", None),
            Err(Lookup::UnknownId(..))
        ));
        let list = reg.list();
        let rr = list.iter().find(|s| s.id == id).unwrap();
        assert_eq!((rr.versions.len(), rr.latest.as_str()), (2, "2.2.0"));
    }
}
