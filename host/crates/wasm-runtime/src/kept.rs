//! Instances kept between chats: a chat that ran to its end leaves its store and instance to
//! the next chat of the same client on the same plugin version, which then skips the
//! instantiation, the guest's start-up and the reset of its memory (11–20 % of a chat's CPU,
//! BENCHMARKS.md, twenty-third session).
//!
//! Invariants:
//! - An instance serves one client only: what a plugin leaves in its memory between calls
//!   (the SDK's provider value, freed buffers) never reaches another client's chat.
//! - Only a store whose chat ran to its end is kept: never one that trapped, ran out of time,
//!   was cancelled or was dropped mid-stream; and none past [`MAX_USES`] chats or half its
//!   memory cap, so a plugin that leaks starts over in a fresh instance.
//! - Few and short-lived: at most the runtime's `kept_instances` at once, the oldest given up
//!   first; one idle longer than [`IDLE_TIMEOUT`] serves no chat (it is dropped when the next
//!   chat is looked up or kept). The pooling allocator has room for them beyond
//!   `max_instances` ([`crate::Runtime::new`]), so a kept instance never holds a call back.
//! - Instances given up are dropped (their slots reset) after the lock is released, so that
//!   other chats never wait on a reset.
//! - Each chat on a kept instance still gets its own task id, notes and CPU deadline
//!   ([`CallState::for_chat`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::contract::{Instance, Pre};
use crate::gate::Notes;
use crate::state::CallState;

/// Chats one instance serves before it is given up.
pub(crate) const MAX_USES: u32 = 1000;
/// How long an instance waits for its client's next chat.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A chat's store and instance, with the plugin version and client they belong to.
pub(crate) struct KeptInstance {
    pub(crate) store: Store<CallState>,
    pub(crate) instance: Instance,
    pre: Arc<Pre>,
    client: String,
    /// Chats it has served.
    pub(crate) uses: u32,
}

struct Idle {
    kept: KeptInstance,
    since: Instant,
}

/// The kept instances of every plugin, newest last.
pub(crate) struct KeptInstances {
    idle: Mutex<VecDeque<Idle>>,
    most: usize,
    /// Half a store's memory cap: a store holding more is not kept.
    most_memory: usize,
}

impl KeptInstances {
    /// Keeps at most `most` instances (0: none), each holding at most half of `memory_limit`.
    pub(crate) fn new(most: usize, memory_limit: usize) -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
            most,
            most_memory: memory_limit / 2,
        }
    }

    /// The newest instance `client` left on `pre`, made ready for the chat of `task_id`.
    pub(crate) fn take(
        &self,
        pre: &Arc<Pre>,
        client: &str,
        task_id: &str,
        notes: Notes,
    ) -> Option<KeptInstance> {
        if self.most == 0 {
            return None;
        }
        let mut idle = self.lock();
        let given_up = expired(&mut idle);
        let found = idle
            .iter()
            .rposition(|i| i.kept.client == client && Arc::ptr_eq(&i.kept.pre, pre))
            .and_then(|at| idle.remove(at));
        drop(idle);
        drop(given_up);
        let mut kept = found?.kept;
        kept.uses += 1;
        kept.store.data_mut().for_chat(task_id, notes);
        Some(kept)
    }

    /// Keeps `kept` for its client's next chat, unless it served its share or grew past half
    /// its memory cap.
    pub(crate) fn put(&self, kept: KeptInstance) {
        if self.most == 0
            || kept.uses >= MAX_USES
            || kept.store.data().limiter.memory() > self.most_memory
        {
            return;
        }
        let mut idle = self.lock();
        let mut given_up = expired(&mut idle);
        if idle.len() >= self.most {
            given_up.extend(idle.pop_front());
        }
        idle.push_back(Idle {
            kept,
            since: Instant::now(),
        });
        drop(idle);
        drop(given_up);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Takes out the instances idle longer than [`IDLE_TIMEOUT`], for the caller to drop once it
/// has released the lock.
fn expired(idle: &mut VecDeque<Idle>) -> Vec<Idle> {
    let mut expired = Vec::new();
    while idle
        .front()
        .is_some_and(|oldest| oldest.since.elapsed() >= IDLE_TIMEOUT)
    {
        expired.extend(idle.pop_front());
    }
    expired
}

impl KeptInstance {
    /// A chat's store and the instance made in it, for `client` on `pre`.
    pub(crate) fn new(
        store: Store<CallState>,
        instance: Instance,
        pre: Arc<Pre>,
        client: &str,
    ) -> Self {
        Self {
            store,
            instance,
            pre,
            client: client.to_string(),
            uses: 1,
        }
    }
}
