//! Capacity: how many tasks of a provider or model may be in flight at once (`[capacity]`).
//!
//! Invariants:
//! - `providers` and `models` limits are counted in the database, by the claim itself
//!   ([`claim_within`](crate::store::tasks::claim_within)): a task counts while it is `running` (being submitted,
//!   streaming, or pending on the vendor) on any host, so the limit holds across hosts. Only
//!   claims start tasks that a limit can hold back; a chat starts running when it is accepted
//!   (its client is waiting on the stream) and counts against its provider from then on.
//! - `per_process` limits count the submits running in this process. While such a provider is
//!   loaded, this process's claims take turns ([`Capacity::room`] holds a gate), and a claimed
//!   task's [`Slot`] is taken before the next claim starts, so two workers of one process never
//!   both take its last slot. A slot is given back when the worker is done with the task (a
//!   task left pending on its vendor no longer holds one).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{config::CapacitySettings, engine::registry::Registry, store::tasks::Room};

/// Submits running in this process, by provider (only providers with a `per_process` limit).
type Here = Arc<Mutex<HashMap<String, usize>>>;

/// The limits of `[capacity]` and what this process runs.
pub struct Capacity {
    /// Counted in the database by the claim.
    counted: Room,
    per_process: HashMap<String, usize>,
    here: Here,
    gate: tokio::sync::Mutex<()>,
}

/// What one claim may take, while it is being made.
pub struct Claiming<'a> {
    /// The claim's conditions.
    pub room: Room,
    capacity: &'a Capacity,
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
}

/// A task's place among this process's submits of its provider; given back on drop.
#[must_use = "the slot is given back when dropped"]
pub struct Slot {
    here: Here,
    provider: Option<String>,
}

impl Capacity {
    /// The limits `settings` set.
    pub fn new(settings: &CapacitySettings) -> Self {
        let mut providers: Vec<(String, i64)> = settings
            .providers
            .iter()
            .map(|(provider, most)| (provider.clone(), *most))
            .collect();
        providers.sort();
        let mut models: Vec<(String, String, i64)> = settings
            .models
            .iter()
            .filter_map(|(id, most)| {
                let (provider, key) = id.split_once('/')?;
                Some((provider.to_string(), key.to_string(), *most))
            })
            .collect();
        models.sort();
        Self {
            counted: Room {
                full_here: Vec::new(),
                providers,
                models,
            },
            per_process: settings.per_process.clone(),
            here: Arc::default(),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any limit is counted in the database (then a task ending frees a slot that a
    /// waiting worker should try to fill).
    pub fn counts_in_database(&self) -> bool {
        !self.counted.providers.is_empty() || !self.counted.models.is_empty()
    }

    /// What the next claim may take; while it is held, no other claim of this process that
    /// a `per_process` limit concerns can start (see the module docs).
    pub async fn room(&self, registry: &Registry) -> Claiming<'_> {
        let limited_here_is_loaded = self
            .per_process
            .keys()
            .any(|provider| registry.provider(provider).is_some());
        let turn = if limited_here_is_loaded {
            Some(self.gate.lock().await)
        } else {
            None
        };
        let running = self.here.lock().expect("capacity lock");
        let mut full_here: Vec<String> = self
            .per_process
            .iter()
            .filter(|(provider, most)| running.get(*provider).copied().unwrap_or(0) >= **most)
            .map(|(provider, _)| provider.clone())
            .collect();
        full_here.sort();
        drop(running);
        Claiming {
            room: Room {
                full_here,
                ..self.counted.clone()
            },
            capacity: self,
            _turn: turn,
        }
    }
}

impl Claiming<'_> {
    /// Counts a task this claim took against its provider's `per_process` limit, before the
    /// next claim may start.
    pub fn took(self, provider: &str) -> Slot {
        let capacity = self.capacity;
        let limited = capacity.per_process.contains_key(provider);
        if limited {
            *capacity
                .here
                .lock()
                .expect("capacity lock")
                .entry(provider.to_string())
                .or_default() += 1;
        }
        Slot {
            here: capacity.here.clone(),
            provider: limited.then(|| provider.to_string()),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(provider) = &self.provider
            && let Some(count) = self
                .here
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(provider)
        {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        engine::{NewTask, task::now_ms},
        server,
        store::{Store, tasks},
    };

    /// Queues a task of `provider/model` with `priority`; its id.
    async fn queue(store: &Store, provider: &str, model: &str, priority: i64) -> String {
        let request = serde_json::json!({"capability": "image.generate", "model": model,
                                         "prompt": "p", "params": {}, "inputs": []});
        let new = NewTask {
            priority,
            ..NewTask::for_tests(provider, serde_json::from_value(request).unwrap())
        };
        let id = crate::engine::task::new_task_id();
        tasks::insert(store, &id, &new, now_ms(), tasks::Start::Queued)
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn claims_take_priority_first_and_leave_providers_and_models_at_their_limits_queued() {
        let dir = tempfile::tempdir().unwrap();
        let host = server::build(Config::embedded(dir.path().to_path_buf()))
            .await
            .unwrap();
        let store = host.engine.store();
        let first_a = queue(store, "vendor", "a", 0).await;
        let second_a = queue(store, "vendor", "a", 0).await;
        let b = queue(store, "vendor", "b", 0).await;
        let urgent_b = queue(store, "vendor", "b", 3).await;
        let other = queue(store, "other", "x", 0).await;
        let here = queue(store, "gpu", "x", 9).await;
        let room = Room {
            full_here: vec!["gpu".into()],
            providers: vec![("vendor".into(), 3)],
            models: vec![("vendor".into(), "a".into(), 1)],
        };
        let providers = ["vendor", "other", "gpu"].map(String::from);
        let mut claimed = Vec::new();
        while let tasks::Claim::Taken(task, _) = tasks::claim_within(
            store,
            now_ms(),
            now_ms() + 60_000,
            "wrk_test",
            &providers,
            &room,
            &[],
        )
        .await
        .unwrap()
        {
            claimed.push(task.id);
        }
        // Priority 3 first; one of model a; then b; vendor is full at 3; other is unlimited;
        // gpu is full in this process whatever its priority.
        assert_eq!(claimed, [urgent_b, first_a, b, other]);
        let queued = tasks::fetch(store, &second_a).await.unwrap().unwrap();
        assert_eq!(
            tasks::queue_position(store, &queued).await.unwrap(),
            Some(2)
        );
        let gpu = tasks::fetch(store, &here).await.unwrap().unwrap();
        assert_eq!(tasks::queue_position(store, &gpu).await.unwrap(), Some(1));
    }

    #[test]
    fn a_provider_at_its_per_process_limit_is_full_until_its_slot_is_given_back() {
        let capacity = Capacity::new(&CapacitySettings::default());
        let registry = Registry::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(capacity.room(&registry).await.room.full_here.is_empty());
            let slot = capacity.room(&registry).await.took("local");
            let other = capacity.room(&registry).await.took("dashscope");
            assert_eq!(capacity.room(&registry).await.room.full_here, ["local"]);
            drop(other);
            drop(slot);
            assert!(capacity.room(&registry).await.room.full_here.is_empty());
        });
        assert!(!capacity.counts_in_database());
    }
}
