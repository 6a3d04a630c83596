//! `GET /openapi.json`: OpenAPI 3.1, generated from the route table ([`super::ROUTES`])
//! and the schema registry. Every route the server registers is described, because both
//! come from the same table; every body schema is the registered JSON Schema itself, so
//! the description cannot drift from `schemas/`.

use flotilla_actors::control_plane::Registry;
use serde_json::{json, Map, Value};

use super::{Auth, Body, Resp, Route, ROUTES};

/// The component name of a schema version: `flotilla.run-request-2.0.0`.
pub fn component_name(id_version: &str) -> String {
    id_version.replace('/', "-")
}

/// A schema document as an OpenAPI component: its `$id` and `$schema` go (a relative
/// `$id` would change how references resolve) and its own `#/$defs/…` references point
/// into the component.
pub fn component(doc: &Value, name: &str) -> Value {
    fn rewrite(v: &mut Value, prefix: &str) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref") {
                    if let Some(rest) = r.strip_prefix("#/") {
                        *r = format!("{prefix}/{rest}");
                    }
                }
                map.values_mut().for_each(|c| rewrite(c, prefix));
            }
            Value::Array(items) => items.iter_mut().for_each(|c| rewrite(c, prefix)),
            _ => {}
        }
    }
    let mut doc = doc.clone();
    if let Some(map) = doc.as_object_mut() {
        map.remove("$id");
        map.remove("$schema");
    }
    rewrite(&mut doc, &format!("#/components/schemas/{name}"));
    doc
}

fn schema_ref(id_version: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", component_name(id_version)) })
}

fn problem() -> Value {
    json!({
        "content": { "application/problem+json": { "schema": schema_ref(PROBLEM) } }
    })
}

/// The problem+json schema version every error refers to.
pub const PROBLEM: &str = "flotilla.problem/1.0.0";

fn response(r: &Resp) -> Value {
    match r {
        Resp::Schema(id) => json!({
            "content": { "application/json": { "schema": schema_ref(id) } }
        }),
        Resp::Object => json!({
            "content": { "application/json": { "schema": { "type": "object" } } }
        }),
        Resp::SchemaDocument => json!({
            "content": { "application/schema+json": { "schema": { "type": "object" } } }
        }),
        Resp::Text => json!({
            "content": { "text/plain": { "schema": { "type": "string" } } }
        }),
        Resp::Problem => problem(),
        Resp::Upgrade | Resp::Redirect => json!({}),
        Resp::Html => json!({
            "content": { "text/html": { "schema": { "type": "string" } } }
        }),
        Resp::Asset => json!({
            "content": {
                "text/javascript": { "schema": { "type": "string" } },
                "text/css": { "schema": { "type": "string" } }
            }
        }),
    }
}

fn description(status: u16) -> &'static str {
    match status {
        101 => "switching to WebSocket",
        302 => "found: see Location",
        200 => "OK",
        201 => "created",
        400 => "bad request: malformed JSON, an invalid id or query, or an unknown schema version",
        401 => "missing or invalid bearer token",
        403 => "the token may not do this, or the person may not",
        404 => "no such thing",
        409 => "conflicts with the current state",
        413 => "the body is too large",
        422 => "the body does not match its schema",
        _ => "see the problem details",
    }
}

fn operation(r: &Route) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), r.operation.into());
    op.insert("summary".into(), r.summary.into());
    let mut params: Vec<Value> = path_params(r.path)
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "schema": path_param_schema(r.path, name)})
        })
        .collect();
    for (name, schema, required) in r.query {
        let schema: Value = serde_json::from_str(schema).unwrap_or_else(|_| json!({}));
        params.push(json!({"name": name, "in": "query", "required": required, "schema": schema}));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), params.into());
    }
    match r.body {
        Body::None => {}
        Body::Schemas(ids) => {
            let schema = match ids {
                [one] => schema_ref(one),
                many => {
                    json!({ "oneOf": many.iter().map(|id| schema_ref(id)).collect::<Vec<_>>() })
                }
            };
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
    }
    let mut responses = Map::new();
    for (status, resp) in r.responses {
        let mut v = response(resp);
        v["description"] = description(*status).into();
        responses.insert(status.to_string(), v);
    }
    op.insert("responses".into(), responses.into());
    match r.auth {
        Auth::None => {
            op.insert("security".into(), json!([]));
        }
        Auth::Token => {
            op.insert("security".into(), json!([{ "bearer": [] }]));
        }
    }
    op.into()
}

/// What a path parameter may be: a schema id, an approval id, a token id (hex), or a
/// task/handle id (the
/// rule `domain` checks: 1–64 of `[A-Za-z0-9._-]`, no leading dot, no `..`).
fn path_param_schema(path: &str, name: &str) -> Value {
    match (path, name) {
        ("/v1/schemas/{id}", _) => json!({"type": "string", "pattern": "^flotilla\\.[a-z0-9-]+$",
                                           "examples": ["flotilla.run-request"]}),
        (_, "action") => json!({"enum": ["cordon", "uncordon", "drain", "restart"]}),
        (p, "id") if p.starts_with("/admin/guard/approvals/") => {
            json!({"type": "string", "pattern": "^ap-[0-9a-f]{12}$"})
        }
        ("/v1/tokens/{id}", _) => json!({"type": "string", "pattern": "^[0-9a-f]{1,64}$"}),
        _ => json!({"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
                    "not": {"pattern": "\\.\\."}}),
    }
}

/// The names of `{…}` segments of an actix path.
pub fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// The whole OpenAPI document.
pub fn document(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method] = operation(r);
    }
    let mut schemas = Map::new();
    for e in registry.entries() {
        let name = component_name(&format!("{}/{}", e.id, e.version));
        schemas.insert(name.clone(), component(&e.document, &name));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "flotilla",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-healing orchestrator for fleets of command and coding-agent runs. Errors are application/problem+json (RFC 9457) with errors[{pointer, rule, message, expected}]."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> (Registry, Value) {
        let registry = Registry::new().unwrap();
        let doc = document(&registry);
        (registry, doc)
    }

    #[test]
    fn every_route_is_described_with_its_path_parameters_and_errors() {
        let (_, doc) = doc();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method];
            assert!(
                op.is_object(),
                "{} {} is not in the document",
                r.method,
                r.path
            );
            for p in path_params(r.path) {
                assert!(
                    op["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["name"] == p),
                    "{} lacks its path parameter {p}",
                    r.path
                );
            }
            if matches!(r.auth, Auth::Token) {
                assert!(
                    op["responses"]["401"].is_object(),
                    "{} must document 401",
                    r.path
                );
            }
        }
        let ids: std::collections::BTreeSet<_> = ROUTES.iter().map(|r| r.operation).collect();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
    }

    #[test]
    fn components_are_the_files_in_schemas_and_every_reference_resolves() {
        let (registry, doc) = doc();
        for e in registry.entries() {
            let name = component_name(&format!("{}/{}", e.id, e.version));
            let file: Value = serde_json::from_str(
                &std::fs::read_to_string(format!(
                    "{}/schemas/{}",
                    env!("CARGO_MANIFEST_DIR"),
                    e.file
                ))
                .unwrap(),
            )
            .unwrap();
            assert_eq!(
                doc["components"]["schemas"][&name],
                component(&file, &name),
                "{name}"
            );
        }
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r);
                    }
                    m.values().for_each(|c| refs(c, out));
                }
                Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 20);
        for r in all {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn the_submit_body_is_either_run_request_version() {
        let (_, doc) = doc();
        let body = &doc["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert_eq!(
            body["oneOf"],
            json!([
                {"$ref": "#/components/schemas/flotilla.run-request-1.2.0"},
                {"$ref": "#/components/schemas/flotilla.run-request-2.2.0"}
            ])
        );
    }
}
