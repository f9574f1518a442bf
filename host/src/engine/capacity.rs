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
