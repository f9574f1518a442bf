//! Adapters (LoRA, LoHa, LoKr) on the native `local` model end to end: the tiny fixture SD
//! model on flex with the adapter fixtures of `host/crates/diffusion/tests/fixtures/adapters`
//! in `EASEL_LORA_DIR`, through seed 003 (`<lora:name:weight>` and `loras`), seed 000
//! (`extraParams.loras`, `supportsLora`), seed 001 jobs and llmage (`loras`) and the admin
//! listing; the folder is watched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use easel_tests::{Backend, Host, Options};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    easel_tests::checkout().join("host/crates/diffusion/tests/fixtures")
}

/// A host on the tiny model whose adapter folder holds `files` (fixture names).
async fn local_host(loras: &Path, files: &[&str]) -> Host {
    for name in files {
        std::fs::copy(
            fixtures().join(format!("adapters/tiny-sd/{name}.safetensors")),
            loras.join(format!("{name}.safetensors")),
        )
        .unwrap();
    }
    Host::start(
        Options::new(Backend::Sqlite)
            .env(
                "EASEL_SD_MODEL",
                fixtures().join("tiny-sd").to_str().unwrap(),
            )
            .env("EASEL_SD_DEVICE", "flex")
            .env("EASEL_LORA_DIR", loras.to_str().unwrap())
            .env("EASEL_ADMIN_KEY", "admin-secret"),
    )
    .await
}

/// Seed 003: submits, waits, and returns the PNG's bytes, or the refusal.
async fn sd_image(host: &Host, body: Value) -> Result<Vec<u8>, (u16, Value)> {
    let (status, created) = host.post("/api/v1/generate", &body).await;
    if status != 200 {
        return Err((status, created));
    }
    let id = created["task_id"].as_str().unwrap().to_string();
    let job = host.wait_terminal(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, task) = host.get(&format!("/api/v1/tasks/{id}")).await;
    Ok(easel_tests::download(task["result_url"].as_str().unwrap())
        .await
        .1)
}

fn request(prompt: &str, extra: Value) -> Value {
    let mut body = json!({"prompt": prompt, "width": 64, "height": 64, "num_inference_steps": 2,
                          "seed": 11, "scheduler": "DDIMScheduler"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// `GET /admin/loras` as the operator: the text as it came.
async fn admin_loras_text(host: &Host) -> String {
    let response = host
        .as_admin(reqwest::Method::GET, "/admin/loras")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    text
}

async fn admin_loras(host: &Host) -> Value {
    serde_json::from_str(&admin_loras_text(host).await).unwrap()
}

/// Waits until the admin listing names (or no longer names) `name` as usable.
async fn wait_listed(host: &Host, name: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed = admin_loras(host).await;
        let usable = listed["loras"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == name && l["refused"].is_null());
        if usable == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} present={present}: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_applies_adapters_per_request() {
    let loras = tempfile::tempdir().unwrap();
    let host = local_host(loras.path(), &["lora", "loha", "bad_keys"]).await;
    let base = sd_image(&host, request("a red fox", json!({})))
        .await
        .unwrap();
    let tagged = sd_image(&host, request("a red fox <lora:lora:0.8>", json!({})))
        .await
        .unwrap();
    assert_ne!(tagged, base, "the adapter changes the image");
    // The task records what was applied.
    let (_, created) = host
        .post(
            "/api/v1/generate",
            &request("a red fox <lora:lora:0.8>", json!({})),
        )
        .await;
    let job = host
        .wait_terminal(created["task_id"].as_str().unwrap())
        .await;
    let applied = &job["usage"]["loras"][0];
    assert_eq!(applied["name"], "lora", "{job}");
    assert_eq!(applied["weight"], 0.8, "the weight as asked: {job}");
    assert_eq!(applied["sha256"].as_str().unwrap().len(), 64, "{job}");
    assert_eq!(
        applied["tensors_applied"], applied["tensors_total"],
        "{job}"
    );
    let field = sd_image(
        &host,
        request(
            "a red fox",
            json!({"loras": [{"name": "lora", "weight": 0.8}]}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(field, tagged, "the tag and the field are the same request");
    // A weight as a form sends it, as seed 003 takes its other numbers.
    let text_weight = sd_image(
        &host,
        request(
            "a red fox",
            json!({"loras": [{"name": "lora", "weight": "0.8"}]}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(text_weight, tagged, "\"0.8\" is the weight 0.8");
    let zero = sd_image(&host, request("a red fox <lora:lora:0>", json!({})))
        .await
        .unwrap();
    assert_eq!(zero, base, "weight 0 is the base model byte for byte");
    let two = sd_image(
        &host,
        request("a red fox <lora:lora:0.8> <lora:loha:0.5>", json!({})),
    )
    .await
    .unwrap();
    assert_ne!(two, tagged, "the second adapter counts");
    let again = sd_image(&host, request("a red fox", json!({})))
        .await
        .unwrap();
    assert_eq!(
        again, base,
        "the shared model is unchanged after adapter requests"
    );

    // Refused naming the field that named the adapter: a tag in the prompt (the tag said), or
    // the entry of `loras`.
    for (prompt, extra, why, loc) in [
        (
            "a fox <lora:nope>",
            json!({}),
            "adapter tag <lora:nope:1>: unknown adapter nope",
            json!(["body", "prompt"]),
        ),
        (
            "a fox",
            json!({"loras": [{"name": "bad_keys"}]}),
            "refused",
            json!(["body", "loras", 0]),
        ),
        (
            "a fox <lora:lora:12>",
            json!({}),
            "adapter tag <lora:lora:12>: weight must be between -10 and 10",
            json!(["body", "prompt"]),
        ),
        (
            "a fox",
            json!({"loras": [{"name": "lora"}, {"name": "loha", "weight": -11}]}),
            "loras[1].weight must be between -10 and 10",
            json!(["body", "loras", 1, "weight"]),
        ),
        // The field's entries come first, then the tags.
        (
            "a fox <lora:loha:0.5> <lora:nope:0.5>",
            json!({"loras": [{"name": "lora"}]}),
            "adapter tag <lora:nope:0.5>: unknown adapter nope",
            json!(["body", "prompt"]),
        ),
    ] {
        let (status, answer) = sd_image(&host, request(prompt, extra)).await.unwrap_err();
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["detail"][0]["loc"], loc, "{answer}");
        assert!(answer.to_string().contains(why), "{why}: {answer}");
    }

    let listed = admin_loras(&host).await;
    let find = |name: &str| {
        listed["loras"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| {
                l["file"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("{name}.safetensors"))
            })
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
    };
    let lora = find("lora");
    assert_eq!(lora["format"], json!(["LoRA (kohya)"]), "{lora}");
    assert_eq!(lora["family"], "SD 1.x");
    assert_eq!(lora["rank"], 2);
    assert!(
        lora["unet_layers"].as_u64().unwrap() > 0
            && lora["text_encoder_layers"].as_u64().unwrap() > 0
    );
    assert_eq!(lora["sha256"].as_str().unwrap().len(), 64);
    // Every field once: a JSON reader keeps one of two same-named keys, which one is its own.
    let text = admin_loras_text(&host).await;
    let entries = listed["loras"].as_array().unwrap().len();
    for field in ["\"name\"", "\"sha256\""] {
        assert_eq!(text.matches(field).count(), entries, "{field} in {text}");
    }
    let bad = find("bad_keys");
    assert_eq!(bad["name"], "bad_keys", "{bad}");
    assert_eq!(bad["sha256"].as_str().unwrap().len(), 64, "{bad}");
    let unmatched = bad["refused"]["unmatched_keys"].as_array().unwrap();
    assert_eq!(unmatched.len(), 3, "{bad}");
    let named = |key: &str| {
        unmatched
            .iter()
            .any(|k| k.as_str().unwrap().starts_with(key))
    };
    assert!(
        named("lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight"),
        "{bad}"
    );

    // Dropped in: usable without a restart; removed: gone.
    std::fs::copy(
        fixtures().join("adapters/tiny-sd/lokr.safetensors"),
        loras.path().join("fresh.safetensors"),
    )
    .unwrap();
    wait_listed(&host, "fresh", true).await;
    let fresh = sd_image(&host, request("a red fox <lora:fresh>", json!({})))
        .await
        .unwrap();
    assert_ne!(fresh, base);
    std::fs::remove_file(loras.path().join("fresh.safetensors")).unwrap();
    wait_listed(&host, "fresh", false).await;
    let (status, _) = sd_image(&host, request("a red fox <lora:fresh>", json!({})))
        .await
        .unwrap_err();
    assert_eq!(status, 422);

    // Two files naming one adapter: the first in name order is it, listed once.
    for (fixture, file) in [("loha", "twin.SAFETENSORS"), ("lora", "twin.safetensors")] {
        std::fs::copy(
            fixtures().join(format!("adapters/tiny-sd/{fixture}.safetensors")),
            loras.path().join(file),
        )
        .unwrap();
    }
    wait_listed(&host, "twin", true).await;
    let listed = admin_loras(&host).await;
    let twins: Vec<&Value> = listed["loras"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"] == "twin")
        .collect();
    assert_eq!(twins.len(), 1, "{listed}");
    assert!(
        twins[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("twin.SAFETENSORS")
    );
    assert_eq!(twins[0]["format"], json!(["LoHa (LyCORIS)"]), "{listed}");

    // A whole model dropped in by mistake is refused in a sentence, not its 520 keys.
    std::fs::copy(
        fixtures().join("tiny-sd.safetensors"),
        loras.path().join("whole.safetensors"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !admin_loras(&host).await["loras"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == "whole")
    {
        assert!(Instant::now() < deadline, "whole never listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, refused) = sd_image(&host, request("a red fox <lora:whole>", json!({})))
        .await
        .unwrap_err();
    assert_eq!(status, 422);
    let text = refused.to_string();
    assert!(text.len() < 2_000 && text.contains("more"), "{text}");

    // A tag written otherwise than A1111 reads it is refused, not run as words.
    let (status, refused) = sd_image(&host, request("a red fox <LORA:lora:0.8>", json!({})))
        .await
        .unwrap_err();
    assert_eq!(status, 422);
    assert!(refused.to_string().contains("lower case"), "{refused}");
}

/// Seed 000: `supportsLora`, `extraParams.loras` as the document writes it, and its refusal
/// shape; a model that does not declare adapters refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_takes_loras_for_local_models() {
    let loras = tempfile::tempdir().unwrap();
    let host = local_host(loras.path(), &["lora"]).await;
    let (status, models) = host.get("/api/v1/models").await;
    assert_eq!(status, 200, "{models}");
    assert_eq!(
        models["data"]["image"]["local/tiny-sd"]["capabilities"]["supportsLora"], true,
        "{models}"
    );
    let image = |loras: Value| {
        json!({"prompt": "a harbour", "model": "local/tiny-sd",
               "extraParams": {"width": 64, "height": 64, "num_inference_steps": 2, "seed": 5, "loras": loras}})
    };
    let mut made = Vec::new();
    for loras in [
        json!([]),
        json!([{"model": "local/lora", "weight": 0.8}]),
        json!([{"model": "local/lora", "weight": 0}]),
    ] {
        let (status, created) = host.post("/api/v1/generations/image", &image(loras)).await;
        assert_eq!(status, 200, "{created}");
        let id = created["data"]["task_id"].as_str().unwrap().to_string();
        host.wait_terminal(&id).await;
        let (_, task) = host.get(&format!("/api/v1/tasks/{id}")).await;
        let url = task["data"]["result"]["images"][0]["url"]
            .as_str()
            .unwrap()
            .to_string();
        made.push(easel_tests::download(&url).await.1);
    }
    assert_ne!(made[1], made[0], "the adapter changes the image");
    assert_eq!(made[2], made[0], "weight 0 is the base image");

    let (status, answer) = host
        .post(
            "/api/v1/generations/image",
            &image(json!([{"model": "local/nope", "weight": 1}])),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "400");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("unknown adapter nope"),
        "{answer}"
    );

    // Seed 001 jobs and llmage take the same `loras` for the local model.
    let job = host
        .run_job(
            &json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "p", "width": 64,
                    "height": 64, "num_inference_steps": 1, "loras": [{"name": "lora", "weight": 0.5}]}),
        )
        .await;
    assert_eq!(job["usage"]["loras"][0]["name"], "lora", "{job}");
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "p",
                    "loras": [{"name": "nope"}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unknown adapter nope"),
        "{answer}"
    );
    let (status, answer) = host
        .post(
            "/llmage/v1/image/generations",
            &json!({"model": "tiny-sd", "catelogid": "t2i", "prompt": "p", "loras": [{"name": "nope"}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.to_string().contains("unknown adapter nope"),
        "{answer}"
    );

    // A model whose schema does not declare adapters refuses them.
    let (status, answer) = host
        .post(
            "/api/v1/generations/video",
            &json!({"prompt": "p", "model": "offline/video",
                    "extraParams": {"loras": [{"model": "offline/x", "weight": 1}]}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("does not take adapters"),
        "{answer}"
    );
}

/// Every models API with room lists each usable adapter with its name, format, family, rank,
/// tensors, layers and hash: seed 001's capabilities (keyed by model id), llmage's model
/// objects and Pixel's `capabilities` (with the `local/<name>` id its requests use); refused
/// files are not offered, and a model that takes no adapters lists none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_listings_show_each_adapter() {
    let loras = tempfile::tempdir().unwrap();
    let host = local_host(loras.path(), &["lora", "loha", "bad_keys"]).await;
    let listed = admin_loras(&host).await;
    let admin = |name: &str| {
        listed["loras"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in the admin listing: {listed}"))
    };
    let check = |where_: &str, loras: &Value, id: Option<&str>| {
        let loras = loras
            .as_array()
            .unwrap_or_else(|| panic!("{where_}: no list: {loras}"));
        let mut names: Vec<&str> = loras.iter().map(|l| l["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["loha", "lora"], "{where_}: the usable ones only");
        for lora in loras {
            let name = lora["name"].as_str().unwrap();
            let admin = admin(name);
            for field in [
                "format",
                "family",
                "rank",
                "tensors",
                "unet_layers",
                "text_encoder_layers",
                "sha256",
            ] {
                assert_eq!(lora[field], admin[field], "{where_}: {name}.{field}");
            }
            if let Some(provider) = id {
                assert_eq!(lora["id"], format!("{provider}/{name}"), "{where_}");
            }
        }
        let loha = loras.iter().find(|l| l["name"] == "loha").unwrap();
        assert_eq!(loha["format"], json!(["LoHa (LyCORIS)"]), "{where_}");
        assert_eq!(loha["family"], "SD 1.x", "{where_}");
        assert_eq!(loha["sha256"].as_str().unwrap().len(), 64, "{where_}");
        assert!(loha["rank"].as_u64().unwrap() > 0, "{where_}");
        assert!(loha["tensors"].as_u64().unwrap() > 0, "{where_}");
    };

    let (status, caps) = host.get("/api/v1/capabilities").await;
    assert_eq!(status, 200, "{caps}");
    let generate = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["capability"] == "image.generate")
        .unwrap();
    check(
        "seed 001 capabilities",
        &generate["loras"]["local/tiny-sd"],
        None,
    );
    assert!(
        generate["loras"].get("offline/image").is_none(),
        "a model without adapters lists none: {generate}"
    );

    let (status, models) = host.get("/llmage/v1/models?catelogid=t2i").await;
    assert_eq!(status, 200, "{models}");
    let data = models["data"].as_array().unwrap();
    let local = data.iter().find(|m| m["owned_by"] == "local").unwrap();
    check("llmage models", &local["loras"], None);
    assert!(
        data.iter()
            .filter(|m| m["owned_by"] != "local")
            .all(|m| m.get("loras").is_none()),
        "{models}"
    );

    let (status, models) = host.get("/api/v1/models").await;
    assert_eq!(status, 200, "{models}");
    let entry = &models["data"]["image"]["local/tiny-sd"];
    assert_eq!(entry["capabilities"]["supportsLora"], true, "{entry}");
    check(
        "Pixel models",
        &entry["capabilities"]["loras"],
        Some("local"),
    );
}
