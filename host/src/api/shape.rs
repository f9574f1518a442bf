//! The one place a task's answer shape is chosen: by the dialect that created it
//! (`task.api`). Webhook bodies and the shared task route (`GET /api/v1/tasks/{id}`) both ask
//! [`Shape`], so a task never answers in one API's shape here and another's there.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::{
    api::{files::Links, jobs, llmage, openai, pixel, sd},
    engine::{WebhookRenderer, task::Task},
};

/// The documented API a task was created through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Seed 001, `/api/v1/jobs`.
    Jobs,
    /// Seed 000, `/api/v1/generations`.
    Pixel,
    /// Seed 002, `/llmage/v1`.
    Llmage,
    /// Seed 003, `/api/v1/generate`.
    Sd,
    /// The OpenAI-compatible routes.
    OpenAi,
}

impl Shape {
    /// The shape of the API that created `task`.
    pub fn of(task: &Task) -> Option<Self> {
        Some(match task.api.as_str() {
            jobs::API => Shape::Jobs,
            pixel::API => Shape::Pixel,
            llmage::API => Shape::Llmage,
            sd::API => Shape::Sd,
            openai::API => Shape::OpenAi,
            _ => return None,
        })
    }

    /// The webhook body, for the APIs that take a webhook (001's `webhookUrl`, 003's
    /// `callback_url`).
    pub fn webhook(self, links: &Links, task: &Task) -> Option<Value> {
        match self {
            Shape::Jobs => Some(jobs::webhook(task)),
            Shape::Sd => Some(sd::webhook(links, task)),
            Shape::Pixel | Shape::Llmage | Shape::OpenAi => None,
        }
    }
}

/// The engine's webhook renderer: every task's body in the shape of the API that created it.
pub fn webhook_renderer(links: Arc<Links>) -> WebhookRenderer {
    Arc::new(move |task: &Task| {
        Shape::of(task)
            .and_then(|shape| shape.webhook(&links, task))
            .unwrap_or_else(|| json!({"id": task.id, "status": task.status}))
    })
}
