//! The schema files: each compiles, and its `$id` names its file. Also the helpers every
//! other module checks documents with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// One schema file: its document and its compiled validator.
pub struct Schema {
    pub doc: Value,
    pub validator: jsonschema::Validator,
}

/// The root package's folder, where `schemas/` and `docs/` are.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A JSON file, or a panic naming it.
pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every `schemas/*.json`, by file stem (`run-request.v1`), compiled as draft 2020-12.
pub fn schemas() -> &'static BTreeMap<String, Schema> {
    static ALL: OnceLock<BTreeMap<String, Schema>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = BTreeMap::new();
        for path in files_in(&root().join("schemas"), "json") {
            let stem = stem(&path);
            let doc = read_json(&path);
            let validator = jsonschema::draft202012::new(&doc)
                .unwrap_or_else(|e| panic!("schemas/{stem}.json does not compile: {e}"));
            all.insert(stem, Schema { doc, validator });
        }
        assert!(!all.is_empty(), "no schemas found in schemas/");
        all
    })
}

/// `schemas/<stem>.json`.
pub fn schema(stem: &str) -> &'static Schema {
    schemas()
        .get(stem)
        .unwrap_or_else(|| panic!("no schema schemas/{stem}.json"))
}

/// The files of `dir` ending in `.ext`, sorted.
pub fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// `run-request.v1` of `schemas/run-request.v1.json`.
pub fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The JSON Schema keyword an error is about (`false` for a `false` schema). Exhaustive,
/// so a new kind in the `jsonschema` crate has to be named here.
pub fn keyword(kind: &ValidationErrorKind) -> &'static str {
    use ValidationErrorKind as K;
    match kind {
        K::AdditionalItems { .. } => "additionalItems",
        K::AdditionalProperties { .. } => "additionalProperties",
        K::AnyOf => "anyOf",
        K::BacktrackLimitExceeded { .. } | K::Pattern { .. } => "pattern",
        K::Constant { .. } => "const",
        K::Contains => "contains",
        K::ContentEncoding { .. } | K::FromUtf8 { .. } => "contentEncoding",
        K::ContentMediaType { .. } => "contentMediaType",
        K::Custom { .. } => "custom",
        K::Enum { .. } => "enum",
        K::ExclusiveMaximum { .. } => "exclusiveMaximum",
        K::ExclusiveMinimum { .. } => "exclusiveMinimum",
        K::FalseSchema => "false",
        K::Format { .. } => "format",
        K::MaxItems { .. } => "maxItems",
        K::Maximum { .. } => "maximum",
        K::MaxLength { .. } => "maxLength",
        K::MaxProperties { .. } => "maxProperties",
        K::MinItems { .. } => "minItems",
        K::Minimum { .. } => "minimum",
        K::MinLength { .. } => "minLength",
        K::MinProperties { .. } => "minProperties",
        K::MultipleOf { .. } => "multipleOf",
        K::Not { .. } => "not",
        K::OneOfMultipleValid | K::OneOfNotValid => "oneOf",
        K::PropertyNames { .. } => "propertyNames",
        K::Required { .. } => "required",
        K::Type { .. } => "type",
        K::UnevaluatedItems { .. } => "unevaluatedItems",
        K::UnevaluatedProperties { .. } => "unevaluatedProperties",
        K::UniqueItems => "uniqueItems",
        K::Referencing(_) => "$ref",
    }
}

/// One violation: where (the validator's instance path), which keyword, and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub rule: &'static str,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({}): {}", self.pointer, self.rule, self.message)
    }
}

/// Every violation of `doc` against `schemas/<stem>.json`.
pub fn violations(stem: &str, doc: &Value) -> Vec<Violation> {
    schema(stem)
        .validator
        .iter_errors(doc)
        .map(|e| Violation {
            pointer: e.instance_path.to_string(),
            rule: keyword(&e.kind),
            message: e.to_string(),
        })
        .collect()
}

/// Violations, one per indented line, for a failure message.
pub fn list(v: &[Violation]) -> String {
    v.iter()
        .map(|v| format!("\n    {v}"))
        .collect::<Vec<_>>()
        .join("")
}

/// Panics unless `doc` follows `schemas/<stem>.json`; `what` says where `doc` came from.
#[track_caller]
pub fn assert_valid(stem: &str, what: &str, doc: &Value) {
    let v = violations(stem, doc);
    assert!(
        v.is_empty(),
        "{what} does not follow schemas/{stem}.json:{}\ndocument: {doc:#}",
        list(&v)
    );
}

/// A value as the code serialises it.
pub fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("serialises")
}

/// `full.json` of `schemas/fixtures/x.v1/valid/full.json`.
pub fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_schema_compiles_and_its_id_names_its_file() {
    let mut wrong = Vec::new();
    for (stem, s) in schemas() {
        let (name, major) = stem
            .rsplit_once(".v")
            .unwrap_or_else(|| panic!("schemas/{stem}.json is not named <name>.v<major>.json"));
        let field = |key: &str| s.doc.get(key).and_then(Value::as_str).unwrap_or_default();
        if field("$schema") != DRAFT_2020_12 {
            wrong.push(format!("{stem}: $schema is not {DRAFT_2020_12}"));
        }
        let id = field("$id");
        let version = id
            .strip_prefix(&format!("flotilla.{name}/"))
            .and_then(|v| v.strip_prefix(&format!("{major}.")))
            .and_then(|v| v.split_once('.'));
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !version.is_some_and(|(minor, patch)| numeric(minor) && numeric(patch)) {
            wrong.push(format!(
                "{stem}: $id {id:?} is not \"flotilla.{name}/{major}.<minor>.<patch>\""
            ));
        }
        for key in ["title", "description"] {
            if field(key).trim().is_empty() {
                wrong.push(format!("{stem}: no {key}"));
            }
        }
        // A document that names its schema must name this one.
        if let Some(named) = s.doc.pointer("/properties/schema/const") {
            if named != id {
                wrong.push(format!(
                    "{stem}: properties.schema.const {named} is not {id:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "schemas:\n  {}", wrong.join("\n  "));
}

/// The list's and the page's item is the task view schema: they must not drift apart.
#[test]
fn task_lists_and_pages_hold_task_views() {
    let view = &schema("task-view.v1").doc;
    let mut body = view.as_object().unwrap().clone();
    for key in ["$schema", "$id", "title", "description", "$defs"] {
        body.remove(key);
    }
    for holder in ["task-list.v1", "task-page.v1"] {
        let list = &schema(holder).doc;
        assert_eq!(
            list.pointer("/$defs/task"),
            Some(&Value::Object(body.clone())),
            "{holder}.json $defs/task differs from the body of task-view.v1.json"
        );
        for (name, def) in view["$defs"].as_object().unwrap() {
            assert_eq!(
                list["$defs"].get(name),
                Some(def),
                "{holder}.json $defs/{name} differs from task-view.v1.json"
            );
        }
    }
}

/// Every array node under `v` that has `prefixItems`, with its JSON pointer.
fn prefix_nodes<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            if map.contains_key("prefixItems") {
                out.push((at.clone(), v));
            }
            for (k, child) in map {
                prefix_nodes(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix_nodes(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// In 2020-12, `items` does not reach the positions `prefixItems` covers: a constraint
/// written once in `items` leaves the first items unchecked (how a NUL got into
/// `argv[0]`). So every position of every `prefixItems` must carry each constraint of
/// its `items` itself, and an array with `prefixItems` must say what follows them.
#[test]
fn every_prefix_items_position_carries_the_constraints_of_items() {
    let mut holes = Vec::new();
    let mut positions = 0;
    for (stem, s) in schemas() {
        let mut nodes = Vec::new();
        prefix_nodes(&s.doc, String::new(), &mut nodes);
        for (at, node) in nodes {
            let Some(prefix) = node["prefixItems"].as_array() else {
                holes.push(format!("{stem}{at}: prefixItems is not an array"));
                continue;
            };
            let items = match node.get("items") {
                None => {
                    holes.push(format!(
                        "{stem}{at}: prefixItems without items (say `items: false` or a schema)"
                    ));
                    continue;
                }
                Some(Value::Bool(false)) => continue,
                Some(Value::Object(items)) => items,
                Some(other) => {
                    holes.push(format!("{stem}{at}: items is {other}"));
                    continue;
                }
            };
            for (i, position) in prefix.iter().enumerate() {
                positions += 1;
                for (keyword, value) in items {
                    if keyword == "description" {
                        continue;
                    }
                    if position.get(keyword) != Some(value) {
                        holes.push(format!(
                            "{stem}{at}/prefixItems/{i}: lacks `{keyword}: {value}` of items"
                        ));
                    }
                }
            }
        }
    }
    assert!(positions > 0, "no prefixItems position checked");
    assert!(holes.is_empty(), "{}", holes.join("\n"));
}
