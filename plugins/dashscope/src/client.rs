//! DashScope's HTTP plumbing: region, auth, the asynchronous task protocol, handles.
//!
//! Long jobs (images, video) are created with `X-DashScope-Async: enable` and answer
//! `output.task_id`; `GET /api/v1/tasks/{id}` reports `output.task_status` (`PENDING`,
//! `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELED`, `UNKNOWN`); `POST
//! /api/v1/tasks/{id}/cancel` cancels a task that is still `PENDING`.

use crate::errors;
use easel_sdk::http::Request;
use easel_sdk::serde_json::Value;
use easel_sdk::{Error, Result};
use std::time::Duration;

/// The API key secret.
pub const API_KEY: &str = "DASHSCOPE_API_KEY";
/// Optional secret choosing the region: `cn-beijing` (default) or `ap-southeast-1`
/// (Singapore, the international site). Keys only work in their own region.
pub const REGION: &str = "DASHSCOPE_REGION";

/// The OSS endpoints DashScope's result links (images, video, speech) point into, one
/// wildcard per endpoint: easel downloads a plugin's links only from hosts its manifest
/// allows. Alibaba documents the link hosts as `dashscope-{id}.oss-accelerate.aliyuncs.com`
/// or `dashscope-{id}.oss-cn-{region}.aliyuncs.com` and says the buckets change without
/// notice, so it publishes no fixed list (the Qwen-Image-Edit FAQ,
/// https://help.aliyun.com/zh/model-studio/qwen-image-edit-api, and the video API
/// references under https://help.aliyun.com/zh/model-studio/video-generation-api/). Naming
/// buckets would fail on the next one: Cloudflare's Wan 2.6 samples
/// (https://developers.cloudflare.com/ai/models/alibaba/wan-2.6-image/) already show
/// `dashscope-463f`, which no Alibaba list names. The regions are those of the references'
/// "网络访问配置" bucket list (`dashscope-result-bj.oss-cn-beijing.aliyuncs.com`, …), plus
/// Singapore (`dashscope-result-sgp.oss-ap-southeast-1.aliyuncs.com` in the international
/// samples) and OSS's global acceleration endpoint. Each also admits other customers'
/// buckets there; an operator who wants less lists exact buckets in `[plugins] allowed_hosts`.
pub const RESULT_HOSTS: &[&str] = &[
    "*.oss-accelerate.aliyuncs.com",
    "*.oss-cn-beijing.aliyuncs.com",
    "*.oss-cn-hangzhou.aliyuncs.com",
    "*.oss-cn-shanghai.aliyuncs.com",
    "*.oss-cn-wulanchabu.aliyuncs.com",
    "*.oss-cn-wulanchabu-acdr-1.aliyuncs.com",
    "*.oss-cn-zhangjiakou.aliyuncs.com",
    "*.oss-cn-shenzhen.aliyuncs.com",
    "*.oss-cn-heyuan.aliyuncs.com",
    "*.oss-cn-chengdu.aliyuncs.com",
    "*.oss-cn-guangzhou.aliyuncs.com",
    "*.oss-ap-southeast-1.aliyuncs.com",
];

const HANDLE_PREFIX: &str = "dashscope-task:v1";
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Synchronous generation (speech, image edits) answers only when the file is made.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the account lives; the handle remembers it so a poll goes to the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// China (Beijing): `dashscope.aliyuncs.com`.
    Beijing,
    /// Singapore: `dashscope-intl.aliyuncs.com`.
    Singapore,
}

impl Region {
    /// The region the operator chose, Beijing when unset.
    pub fn configured() -> Result<Region> {
        match easel_sdk::secret(REGION).as_deref().map(str::trim) {
            None | Some("") | Some("cn-beijing") | Some("beijing") => Ok(Region::Beijing),
            Some("ap-southeast-1") | Some("singapore") | Some("intl") => Ok(Region::Singapore),
            Some(other) => Err(Error::internal(format!(
                "{REGION} is `{other}`; use `cn-beijing` or `ap-southeast-1`"
            ))),
        }
    }

    /// The API host.
    pub fn host(self) -> &'static str {
        match self {
            Region::Beijing => "dashscope.aliyuncs.com",
            Region::Singapore => "dashscope-intl.aliyuncs.com",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Region::Beijing => "cn",
            Region::Singapore => "intl",
        }
    }

    fn from_code(code: &str) -> Result<Region> {
        match code {
            "cn" => Ok(Region::Beijing),
            "intl" => Ok(Region::Singapore),
            other => Err(Error::invalid(format!("unknown region `{other}` in handle"))),
        }
    }

    /// `https://<host>/api/v1` followed by `path`.
    pub fn api(self, path: &str) -> String {
        format!("https://{}/api/v1{path}", self.host())
    }

    /// The OpenAI-compatible endpoint followed by `path`.
    pub fn compatible(self, path: &str) -> String {
        format!("https://{}/compatible-mode/v1{path}", self.host())
    }
}

/// The request with the operator's key.
pub fn authorized(request: Request) -> Result<Request> {
    Ok(request.bearer(&easel_sdk::require_secret(API_KEY)?))
}

/// What a pending handle refers to, which decides how results are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `output.results[].url`: images.
    Image,
    /// `output.video_url`: video.
    Video,
}

impl Family {
    fn code(self) -> &'static str {
        match self {
            Family::Image => "image",
            Family::Video => "video",
        }
    }

    /// How long a task of this family usually needs between polls.
    pub fn poll_after_ms(self) -> u64 {
        match self {
            Family::Image => 3_000,
            Family::Video => 15_000,
        }
    }
}

/// A vendor task, as carried in the handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Where it runs.
    pub region: Region,
    /// How its results read.
    pub family: Family,
    /// DashScope's task id.
    pub id: String,
}

impl Task {
    /// The handle the host persists.
    pub fn handle(&self) -> String {
        vendor_kit::handle::encode(HANDLE_PREFIX, &[self.region.code(), self.family.code(), &self.id])
    }

    /// Reads a handle made by [`Task::handle`].
    pub fn from_handle(handle: &str) -> Result<Task> {
        let fields = vendor_kit::handle::decode(HANDLE_PREFIX, handle, 3)?;
        let family = match fields[1] {
            "image" => Family::Image,
            "video" => Family::Video,
            other => return Err(Error::invalid(format!("unknown task family `{other}` in handle"))),
        };
        Ok(Task { region: Region::from_code(fields[0])?, family, id: fields[2].to_string() })
    }
}

/// Creates an asynchronous task at `path` (under `/api/v1`) and returns it.
pub fn create_task(region: Region, family: Family, path: &str, body: &Value) -> Result<Task> {
    let request = authorized(Request::post(region.api(path)))?
        .header("X-DashScope-Async", "enable")
        .json(body)
        .timeout(SUBMIT_TIMEOUT);
    let answer = errors::json_or_error(request.send()?)?;
    let id = answer
        .pointer("/output/task_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::upstream(format!("DashScope accepted the task but sent no task_id: {answer}")))?;
    Ok(Task { region, family, id: id.to_string() })
}

/// The whole answer of `GET /api/v1/tasks/{id}`.
pub fn fetch_task(task: &Task) -> Result<Value> {
    let request = authorized(Request::get(task.region.api(&format!("/tasks/{}", task.id))))?.timeout(SUBMIT_TIMEOUT);
    errors::json_or_error(request.send()?)
}

/// `POST /api/v1/tasks/{id}/cancel`; DashScope only cancels tasks still queued.
pub fn cancel_task(task: &Task) -> Result<()> {
    let request =
        authorized(Request::post(task.region.api(&format!("/tasks/{}/cancel", task.id))))?.timeout(SUBMIT_TIMEOUT);
    errors::json_or_error(request.send()?).map(|_| ())
}

/// A synchronous call at `path` (under `/api/v1`), answering the whole JSON body.
pub fn call(region: Region, path: &str, body: &Value) -> Result<Value> {
    let request = authorized(Request::post(region.api(path)))?.json(body).timeout(SYNC_TIMEOUT);
    errors::json_or_error(request.send()?)
}
