//! The document against the code: no route escapes it, every operation is described, and it
//! keeps what the hand-kept table it replaced had.

use std::path::Path;

use super::*;
use crate::config::Limits;

/// The document of every route `api` serves, and what aide found wrong while building it.
fn document() -> (Value, Vec<String>) {
    let (_, document, problems) = generate(|| crate::api::routes(&Limits::default()));
    (document, problems)
}

fn sources(folder: &Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            found.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn every_route_in_api_is_registered_with_its_documentation() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files = Vec::new();
    sources(&folder, &mut files);
    assert!(
        files.len() > 5,
        "read the API files in {}",
        folder.display()
    );
    // Spelt in pieces so this file does not match itself.
    let escapes = [
        (concat!(".route", "("), "a route aide does not document"),
        (concat!("_service", "("), "a service outside the document"),
        (concat!(".fallback", "("), "a fallback outside the document"),
        (
            concat!(".hidden", "("),
            "an operation hidden from the document",
        ),
    ];
    for (file, text) in &files {
        for (needle, why) in escapes {
            assert!(
                !text.contains(needle),
                "{file} uses `{needle}`: {why}; register it with `api_route`"
            );
        }
        let plain = concat!("Router", "::new");
        for (at, _) in text.match_indices(plain) {
            assert!(
                text[..at].ends_with("Api"),
                "{file} builds a plain axum router, whose routes the document would miss"
            );
        }
    }
}

#[test]
fn the_document_describes_every_operation() {
    let (document, problems) = document();
    assert_eq!(problems, Vec::<String>::new());
    let tags = [
        Api::Jobs,
        Api::Pixel,
        Api::Llmage,
        Api::OpenAi,
        Api::Sd,
        Api::Admin,
        Api::Documents,
    ]
    .map(Api::tag);
    let paths = document["paths"].as_object().unwrap();
    let mut opened = Vec::new();
    for (path, item) in paths {
        let operations = item.as_object().unwrap();
        assert!(!operations.is_empty(), "{path} has no operation");
        assert!(
            !path.contains("{*"),
            "{path}: a router wildcard is no OpenAPI template"
        );
        for (method, operation) in operations {
            let at = format!("{method} {path}");
            assert!(operation["summary"].is_string(), "{at} has no summary");
            let tagged = operation["tags"].as_array().unwrap();
            assert!(
                tagged.len() == 1 && tags.contains(&tagged[0].as_str().unwrap()),
                "{at} is tagged {tagged:?}"
            );
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let declared = operation["parameters"].as_array().unwrap();
                assert!(
                    declared
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{at} does not declare {name}"
                );
            }
            // A success, and the API's errors: seed 003's invalid request is FastAPI's 422.
            let invalid = if tagged[0] == Api::Sd.tag() {
                "422"
            } else {
                "400"
            };
            let responses = &operation["responses"];
            assert!(
                ["200", "201", "202"]
                    .iter()
                    .any(|ok| responses[ok].is_object()),
                "{at}: no success"
            );
            // An operation that needs no key asks none and lists no 401; every other one
            // takes the document's keys.
            let open = operation.get("security") == Some(&json!([]));
            if open {
                opened.push(path.as_str());
                assert!(responses["401"].is_null(), "{at}: open, yet a 401");
            }
            let statuses: &[&str] = if open {
                &[invalid, "404"]
            } else {
                &[invalid, "401", "404"]
            };
            for status in statuses {
                assert!(responses[*status].is_object(), "{at}: {status}");
            }
        }
    }
    opened.sort_unstable();
    assert_eq!(
        opened,
        [
            "/api/health",
            "/api/v1/openapi.json",
            "/console",
            "/console/{file}",
            "/docs",
            "/docs/{file}",
            "/files/{asset_id}/{signature}",
            "/health",
            "/openapi.json",
            "/redoc",
        ],
        "the routes that need no key"
    );
    // A download answers the file, a range of it, or a redirect; speech answers its audio.
    let download = &paths["/api/v1/assets/{id}/download"]["get"]["responses"];
    let file = &download["200"]["content"]["*/*"]["schema"];
    assert_eq!(file["format"], "binary", "{download}");
    assert!(
        download["206"].is_object() && download["307"].is_object(),
        "{download}"
    );
    let speech = &paths["/v1/audio/speech"]["post"]["responses"]["200"]["content"];
    assert!(
        speech["*/*"].is_object() && speech["application/json"].is_null(),
        "{speech}"
    );
    // Every reference resolves.
    let text = document.to_string();
    let reference = "\"$ref\":\"#/components/schemas/";
    for (at, _) in text.match_indices(reference) {
        let name: String = text[at + reference.len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        assert!(
            document["components"]["schemas"][&name].is_object(),
            "{name} is referenced but not defined"
        );
    }
}

#[test]
fn the_document_keeps_what_the_hand_kept_one_had() {
    let (document, _) = document();
    let operations = [
        ("post", "/api/v1/jobs", "001 jobs", Some("JobRequest")),
        ("get", "/api/v1/jobs", "001 jobs", None),
        ("get", "/api/v1/jobs/{id}", "001 jobs", None),
        ("post", "/api/v1/jobs/{id}/cancel", "001 jobs", None),
        ("get", "/api/v1/capabilities", "001 jobs", None),
        ("post", "/api/v1/assets", "001 jobs", Some("RegisterUrl")),
        ("get", "/api/v1/assets", "001 jobs", None),
        ("get", "/api/v1/assets/{id}", "001 jobs", None),
        ("get", "/api/v1/assets/{id}/download", "001 jobs", None),
        ("get", "/api/v1/models", "000 Pixel", None),
        (
            "post",
            "/api/v1/generations/{kind}",
            "000 Pixel",
            Some("GenerationRequest"),
        ),
        ("get", "/api/v1/tasks/{id}", "000 Pixel", None),
        ("get", "/health", "003 SD service", None),
        ("get", "/api/health", "003 SD service", None),
        (
            "post",
            "/api/v1/generate",
            "003 SD service",
            Some("GenerateRequest"),
        ),
        ("get", "/llmage/v1/models", "002 llmage", None),
        (
            "post",
            "/llmage/v1/chat/completions",
            "002 llmage",
            Some("ChatCompletionRequest"),
        ),
        ("post", "/llmage/v1/image/generations", "002 llmage", None),
        ("post", "/llmage/v1/video/generations", "002 llmage", None),
        ("get", "/llmage/v1/tasks", "002 llmage", None),
        ("get", "/v1/models", "OpenAI", None),
        (
            "post",
            "/v1/chat/completions",
            "OpenAI",
            Some("ChatRequest"),
        ),
        (
            "post",
            "/v1/images/generations",
            "OpenAI",
            Some("ImageRequest"),
        ),
        ("get", "/files/{asset_id}/{signature}", "documents", None),
        ("get", "/admin/plugins", "admin", None),
        ("post", "/admin/plugins/reload", "admin", None),
        ("post", "/admin/clients", "admin", Some("NewClient")),
        (
            "post",
            "/admin/clients/{id}/credits",
            "admin",
            Some("Grant"),
        ),
        ("get", "/admin/clients/{id}/usage", "admin", None),
        ("get", "/openapi.json", "documents", None),
        ("get", "/api/v1/openapi.json", "documents", None),
        ("get", "/docs", "documents", None),
        ("get", "/redoc", "documents", None),
    ];
    for (method, path, tag, body) in operations {
        let operation = &document["paths"][path][method];
        assert_eq!(operation["tags"], json!([tag]), "{method} {path}");
        if let Some(body) = body {
            assert_eq!(
                operation["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{body}"),
                "{method} {path}"
            );
        }
    }
    let llmage = &document["paths"]["/llmage/v1/image/generations"]["post"];
    assert_eq!(
        llmage["requestBody"]["content"]["application/json"]["schema"]["required"],
        json!(["model", "catelogid", "prompt"])
    );
    for (path, names) in [
        (
            "/api/v1/jobs",
            &["status", "capability", "limit", "before"][..],
        ),
        ("/api/v1/assets", &["limit", "before"]),
        ("/llmage/v1/models", &["catelogid"]),
        ("/llmage/v1/tasks", &["taskid"]),
    ] {
        let declared = &document["paths"][path]["get"]["parameters"];
        for name in names {
            assert!(
                declared
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == *name && p["in"] == "query"),
                "{path} does not declare ?{name}"
            );
        }
    }
    assert_eq!(document["openapi"], "3.1.0");
    assert!(
        document["components"]["schemas"]["JobRequest"]["properties"]["webhookUrl"].is_object()
    );
    assert!(document["components"]["schemas"]["JobView"].is_object());
    assert_eq!(document["security"].as_array().unwrap().len(), 3);
}

/// What clients generate code from: the statuses each route answers, the header seed 001 asks
/// for, both ways to upload, and optional fields that take `null` as OpenAPI 3.1 writes it.
#[test]
fn the_document_says_what_the_routes_answer() {
    let (document, _) = document();
    assert_eq!(document["openapi"], "3.1.0");
    let responses = |method: &str, path: &str| {
        let listed = document["paths"][path][method]["responses"]
            .as_object()
            .unwrap();
        listed.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        responses("post", "/api/v1/jobs"),
        ["200", "202", "400", "401", "404", "409", "413", "429"]
    );
    assert_eq!(
        responses("post", "/api/v1/jobs/{id}/cancel"),
        ["200", "202", "400", "401", "404", "409"]
    );
    assert_eq!(
        responses("post", "/api/v1/assets"),
        ["201", "400", "401", "404", "413"]
    );
    assert_eq!(
        responses("post", "/api/v1/generate"),
        ["200", "401", "404", "413", "422", "429", "503"]
    );
    let create = &document["paths"]["/api/v1/jobs"]["post"];
    assert_eq!(create["parameters"][0]["name"], "Idempotency-Key");
    assert_eq!(create["parameters"][0]["in"], "header");
    let upload = &document["paths"]["/api/v1/assets"]["post"]["requestBody"]["content"];
    assert!(upload["application/json"].is_object(), "{upload}");
    assert!(upload["multipart/form-data"].is_object(), "{upload}");
    let width = &document["components"]["schemas"]["JobRequest"]["properties"]["width"];
    assert!(
        width["type"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("null"))),
        "{width}"
    );
    assert!(!document.to_string().contains("\"nullable\""));
}
