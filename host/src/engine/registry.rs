//! The provider registry: who serves which model, swapped atomically on plugin reload.
//!
//! Invariants: a lookup hands out an `Arc` of the provider, so a call that started on one
//! version finishes on it even if a reload replaces the entry meanwhile; the next lookup sees
//! the new version. Model ids are `provider/key`; bare keys resolve through the operator's
//! aliases, or when exactly one provider serves that key. A bare key two providers serve is
//! refused with the candidates named, never guessed, and [`Registry::listed_name`] gives each
//! model the name a listing may show: one that resolves back to that model. Every listed
//! model's parameter schema is compiled once, when its provider is registered; a model whose
//! schema easel cannot check is left out (plugins with one are already refused at load).
//!
//! The fleet: besides the providers loaded in this process, the registry holds the ones other
//! processes announced in the workers table ([`Registry::set_fleet`]), so that an API host
//! that loads no model lists, validates and accepts what the fleet serves through the same
//! lookups. A provider loaded here wins over an announced one of the same id, and
//! [`Registry::provider`] hands out only loaded ones: an announced provider is never called.
//! With `easel worker --providers`, the registry loads only the named providers
//! ([`Registry::serving_only`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use crate::engine::provider::{ModelInfo, Provider, ProviderSink, schema::ParamsSchema};
use crate::engine::task::now_ms;

/// A model resolved to the provider that serves it.
#[derive(Clone)]
pub struct Resolved {
    /// The provider, pinned for this call.
    pub provider: Arc<dyn Provider>,
    /// The model's description.
    pub model: ModelInfo,
    /// Its parameter schema, compiled.
    pub schema: Arc<ParamsSchema>,
}

impl Resolved {
    /// `provider/key`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider.id(), self.model.key)
    }

    /// `Ok` when the model serves `capability`, else [`ResolveError::Unsupported`].
    pub fn serves(&self, capability: &str) -> Result<(), ResolveError> {
        if self.model.capabilities.iter().any(|c| c == capability) {
            return Ok(());
        }
        Err(ResolveError::Unsupported {
            model: self.id(),
            capability: capability.into(),
        })
    }
}

/// Why a model could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResolveError {
    /// No provider serves that id.
    #[error("Unknown model: {0}")]
    Unknown(String),
    /// A bare key more than one provider serves, with no alias to choose between them.
    #[error("Model {name} is ambiguous: {}", candidates.join(", "))]
    Ambiguous {
        /// The name as asked.
        name: String,
        /// The full ids that name could mean, in provider order.
        candidates: Vec<String>,
    },
    /// The model exists but not for this capability.
    #[error("Model {model} does not support {capability}")]
    Unsupported {
        /// The model id.
        model: String,
        /// The capability asked for.
        capability: String,
    },
    /// Nothing serves the capability at all.
    #[error("No model serves {0}")]
    NoModel(String),
}

/// A provider with its model list, read once when it was registered.
#[derive(Clone)]
struct Entry {
    provider: Arc<dyn Provider>,
    models: Arc<Vec<(ModelInfo, Arc<ParamsSchema>)>>,
}

impl Entry {
    fn resolved(&self, (model, schema): &(ModelInfo, Arc<ParamsSchema>)) -> Resolved {
        Resolved {
            provider: self.provider.clone(),
            model: model.clone(),
            schema: schema.clone(),
        }
    }

    /// Reads a provider's models once, compiling each schema.
    fn of(provider: Arc<dyn Provider>) -> Self {
        let id = provider.id().to_string();
        let models = provider
            .models()
            .into_iter()
            .filter_map(|model| match ParamsSchema::compile(&model.params_schema) {
                Ok(schema) => Some((model, Arc::new(schema))),
                Err(error) => {
                    tracing::error!(provider = %id, model = %model.key, %error, "model left out");
                    None
                }
            })
            .collect();
        Entry {
            provider,
            models: Arc::new(models),
        }
    }
}

/// What the other processes of the fleet serve.
#[derive(Default)]
struct Fleet {
    /// Providers announced by workers seen within their lease and the grace period.
    announced: BTreeMap<String, Entry>,
    /// Until when (ms) some worker serves each provider: its latest heartbeat plus its lease.
    serving_until: BTreeMap<String, i64>,
}

/// Every provider the host knows, keyed by id.
#[derive(Default)]
pub struct Registry {
    providers: RwLock<BTreeMap<String, Entry>>,
    fleet: RwLock<Fleet>,
    aliases: RwLock<HashMap<String, String>>,
    defaults: RwLock<HashMap<String, String>>,
    /// The only providers this process loads; every one when `None`.
    only: Option<BTreeSet<String>>,
}

impl Registry {
    /// A registry that loads only the providers `ids` names (`easel worker --providers`),
    /// or every provider offered when `None`.
    pub fn serving_only(ids: Option<BTreeSet<String>>) -> Self {
        Self {
            only: ids,
            ..Self::default()
        }
    }

    /// Whether this process loads provider `id` (see [`Registry::serving_only`]).
    pub fn admits(&self, id: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(id))
    }

    /// Adds or replaces a provider; one this process does not serve is left out.
    pub fn upsert(&self, provider: Arc<dyn Provider>) {
        let id = provider.id().to_string();
        if !self.admits(&id) {
            tracing::info!(provider = %id, "not loaded: --providers leaves it out");
            return;
        }
        crate::metrics::get().provider_served(&id);
        self.providers
            .write()
            .expect("registry lock")
            .insert(id, Entry::of(provider));
    }

    /// The ids of the providers loaded in this process, the ones its workers claim tasks of.
    pub fn provider_ids(&self) -> Vec<String> {
        self.providers
            .read()
            .expect("registry lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Replaces what the fleet announced: providers as other processes serve them, each
    /// with its models (never called here).
    pub fn set_fleet(&self, announced: Vec<Arc<dyn Provider>>) {
        self.fleet.write().expect("registry lock").announced = announced
            .into_iter()
            .map(|provider| (provider.id().to_string(), Entry::of(provider)))
            .collect();
    }

    /// Replaces until when (ms) some worker serves each provider.
    pub fn set_serving(&self, serving_until: BTreeMap<String, i64>) {
        self.fleet.write().expect("registry lock").serving_until = serving_until;
    }

    /// Whether a live worker of the fleet serves provider `id` at `now` (ms).
    pub fn is_served(&self, id: &str, now: i64) -> bool {
        let fleet = self.fleet.read().expect("registry lock");
        fleet
            .serving_until
            .get(id)
            .is_some_and(|until| *until >= now)
    }

    /// The entry of provider `id`: loaded here, else announced by the fleet.
    fn entry(&self, id: &str) -> Option<Entry> {
        let loaded = self
            .providers
            .read()
            .expect("registry lock")
            .get(id)
            .cloned();
        loaded.or_else(|| {
            let fleet = self.fleet.read().expect("registry lock");
            fleet.announced.get(id).cloned()
        })
    }

    /// Every entry, loaded here or announced, by provider id.
    fn entries(&self) -> Vec<Entry> {
        let mut all: BTreeMap<String, Entry> =
            self.fleet.read().expect("registry lock").announced.clone();
        let loaded = self.providers.read().expect("registry lock");
        all.extend(loaded.iter().map(|(id, entry)| (id.clone(), entry.clone())));
        all.into_values().collect()
    }

    /// Removes a provider; tasks already holding it finish on it.
    pub fn remove(&self, id: &str) {
        self.providers.write().expect("registry lock").remove(id);
    }

    /// The provider with this id, when it is loaded in this process.
    pub fn provider(&self, id: &str) -> Option<Arc<dyn Provider>> {
        self.providers
            .read()
            .expect("registry lock")
            .get(id)
            .map(|e| e.provider.clone())
    }

    /// The provider with this id as this process knows it, loaded here or announced by the
    /// fleet: for what it promises (whether its submit may be repeated), never to be called.
    pub fn declared(&self, id: &str) -> Option<Arc<dyn Provider>> {
        self.entry(id).map(|entry| entry.provider)
    }

    /// Maps a bare or alternative name onto a full `provider/key` id.
    pub fn set_alias(&self, alias: &str, target: &str) {
        self.aliases
            .write()
            .expect("registry lock")
            .insert(alias.into(), target.into());
    }

    /// Makes `model` the default for `capability`.
    pub fn set_default(&self, capability: &str, model: &str) {
        self.defaults
            .write()
            .expect("registry lock")
            .insert(capability.into(), model.into());
    }

    /// Every model with its provider (loaded here or announced by the fleet), ordered by
    /// provider id then the provider's order.
    pub fn models(&self) -> Vec<Resolved> {
        self.entries()
            .iter()
            .flat_map(|entry| entry.models.iter().map(|listed| entry.resolved(listed)))
            .collect()
    }

    /// The default model id for a capability: the operator's choice, else the first model
    /// serving it of a provider that runs somewhere now (loaded here, or served by a live
    /// worker), else the first of one only a departed worker announced (its models stay known
    /// for `[engine] model_grace_secs`): a restart that drops a plugin does not send
    /// requests that name no model to a provider nothing serves.
    pub fn default_for(&self, capability: &str) -> Option<String> {
        if let Some(id) = self.defaults.read().expect("registry lock").get(capability) {
            return Some(id.clone());
        }
        let entries = self.entries();
        let now = now_ms();
        let runs = |entry: &&Entry| {
            let id = entry.provider.id();
            self.provider(id).is_some() || self.is_served(id, now)
        };
        let serving = |entry: &Entry| {
            entry
                .models
                .iter()
                .map(|(model, _)| model)
                .find(|m| m.capabilities.iter().any(|c| c == capability))
                .map(|m| format!("{}/{}", entry.provider.id(), m.key))
        };
        entries
            .iter()
            .filter(runs)
            .find_map(serving)
            .or_else(|| entries.iter().find_map(serving))
    }

    /// Finds the model for `requested` (or the default) that serves `capability`.
    pub fn resolve(
        &self,
        requested: Option<&str>,
        capability: &str,
    ) -> Result<Resolved, ResolveError> {
        let wanted = match requested.filter(|m| !m.is_empty()) {
            Some(name) => name.to_string(),
            None => self
                .default_for(capability)
                .ok_or_else(|| ResolveError::NoModel(capability.into()))?,
        };
        let found = self.find(&wanted)?;
        found.serves(capability)?;
        Ok(found)
    }

    /// Looks a model up by full id, alias, or unique bare key; the error is
    /// [`ResolveError::Unknown`] or [`ResolveError::Ambiguous`].
    pub fn find(&self, name: &str) -> Result<Resolved, ResolveError> {
        let target = self
            .aliases
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string());
        if let Some((provider_id, key)) = target.split_once('/') {
            if let Some(entry) = self.entry(provider_id) {
                return entry
                    .models
                    .iter()
                    .find(|(model, _)| model.key == key)
                    .map(|listed| entry.resolved(listed))
                    .ok_or_else(|| ResolveError::Unknown(name.to_string()));
            }
        }
        let mut matches: Vec<Resolved> = self
            .models()
            .into_iter()
            .filter(|r| r.model.key == target)
            .collect();
        match matches.len() {
            0 => Err(ResolveError::Unknown(name.to_string())),
            1 => Ok(matches.remove(0)),
            _ => Err(ResolveError::Ambiguous {
                name: name.to_string(),
                candidates: matches.iter().map(Resolved::id).collect(),
            }),
        }
    }

    /// The name a model list shows for `model`, one [`Registry::find`] resolves back to it:
    /// its bare key when that is unambiguous, else an alias of its full id, else the full
    /// id. `None` when no name reaches it (an alias has taken its full id).
    pub fn listed_name(&self, model: &Resolved) -> Option<String> {
        let id = model.id();
        let mut aliases: Vec<String> = self
            .aliases
            .read()
            .expect("registry lock")
            .iter()
            .filter(|(_, target)| **target == id)
            .map(|(alias, _)| alias.clone())
            .collect();
        aliases.sort();
        std::iter::once(model.model.key.clone())
            .chain(aliases)
            .chain(std::iter::once(id))
            .find(|name| self.reaches(name, model))
    }

    /// Whether [`Registry::find`] resolves `name` to `model`.
    pub fn reaches(&self, name: &str, model: &Resolved) -> bool {
        self.find(name).is_ok_and(|found| found.id() == model.id())
    }
}

impl ProviderSink for Registry {
    fn upsert(&self, provider: Arc<dyn Provider>) {
        Registry::upsert(self, provider);
    }

    fn remove(&self, id: &str) {
        Registry::remove(self, id);
    }

    fn admits(&self, id: &str) -> bool {
        Registry::admits(self, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stub::StubProvider;

    fn registry() -> Registry {
        let registry = Registry::default();
        registry.upsert(Arc::new(
            StubProvider::new("dashscope", true).serving(&["qwen-image", "wan"]),
        ));
        registry.upsert(Arc::new(
            StubProvider::new("modelscope", true).serving(&["qwen-image"]),
        ));
        registry
    }

    fn listed(registry: &Registry) -> Vec<String> {
        registry
            .models()
            .iter()
            .filter_map(|m| registry.listed_name(m))
            .collect()
    }

    #[test]
    fn a_bare_key_two_providers_serve_is_refused_naming_both() {
        let registry = registry();
        let error = registry.find("qwen-image").err().unwrap();
        assert_eq!(
            error,
            ResolveError::Ambiguous {
                name: "qwen-image".into(),
                candidates: vec![
                    "dashscope/qwen-image".into(),
                    "modelscope/qwen-image".into()
                ],
            }
        );
        assert_eq!(
            error.to_string(),
            "Model qwen-image is ambiguous: dashscope/qwen-image, modelscope/qwen-image"
        );
        assert_eq!(
            registry.resolve(Some("qwen-image"), "image.generate").err(),
            Some(error)
        );
        assert_eq!(
            registry.find("modelscope/qwen-image").unwrap().id(),
            "modelscope/qwen-image"
        );
        assert_eq!(registry.find("wan").unwrap().id(), "dashscope/wan");
        assert_eq!(
            registry.find("nothing").err(),
            Some(ResolveError::Unknown("nothing".into()))
        );
        assert_eq!(
            registry.find("dashscope/nothing").err(),
            Some(ResolveError::Unknown("dashscope/nothing".into()))
        );
    }

    #[test]
    fn the_fleet_s_models_are_found_and_listed_but_only_loaded_providers_are_handed_out() {
        let registry = Registry::serving_only(Some(["dashscope".to_string()].into()));
        registry.upsert(Arc::new(
            StubProvider::new("dashscope", true).serving(&["wan"]),
        ));
        registry.upsert(Arc::new(
            StubProvider::new("modelscope", true).serving(&["qwen-image"]),
        ));
        assert_eq!(
            registry.provider_ids(),
            ["dashscope"],
            "--providers leaves modelscope out"
        );
        registry.set_fleet(vec![
            Arc::new(StubProvider::new("local", true).serving(&["tiny-sd"])),
            Arc::new(StubProvider::new("dashscope", true).serving(&["announced-only"])),
        ]);
        assert_eq!(registry.find("tiny-sd").unwrap().id(), "local/tiny-sd");
        assert_eq!(
            registry.resolve(None, "image.generate").unwrap().id(),
            "dashscope/wan",
            "the first provider by id, loaded or announced"
        );
        assert_eq!(
            listed(&registry),
            ["wan", "tiny-sd"],
            "a loaded provider wins"
        );
        assert!(
            registry.provider("local").is_none(),
            "an announced provider is never called"
        );
        assert!(
            registry
                .declared("local")
                .is_some_and(|p| p.submit_is_idempotent())
        );
        registry.set_serving([("local".to_string(), 1_000)].into());
        assert!(registry.is_served("local", 1_000));
        assert!(
            !registry.is_served("local", 1_001),
            "a worker's lease ended"
        );
        assert!(
            !registry.is_served("dashscope", 0),
            "loaded here is not served by a worker"
        );
        registry.set_fleet(Vec::new());
        assert!(registry.find("local/tiny-sd").is_err());
    }

    #[test]
    fn the_default_model_is_one_that_runs_somewhere_now() {
        let registry = Registry::default();
        registry.upsert(Arc::new(
            StubProvider::new("modelscope", true).serving(&["qwen-image"]),
        ));
        // A departed worker (or this host before a restart) announced a provider first by id.
        registry.set_fleet(vec![Arc::new(
            StubProvider::new("dashscope", true).serving(&["wan"]),
        )]);
        let default = || registry.resolve(None, "image.generate").unwrap().id();
        assert_eq!(
            default(),
            "modelscope/qwen-image",
            "loaded here, not departed"
        );
        registry.set_serving([("dashscope".to_string(), now_ms() + 60_000)].into());
        assert_eq!(
            default(),
            "dashscope/wan",
            "a live worker serves it: first by id"
        );
        registry.remove("modelscope");
        registry.set_serving(Default::default());
        assert_eq!(
            default(),
            "dashscope/wan",
            "only known from the departed announcement, still accepted"
        );
    }

    #[test]
    fn listings_name_each_model_by_a_name_that_finds_it() {
        let registry = registry();
        assert_eq!(
            listed(&registry),
            ["dashscope/qwen-image", "wan", "modelscope/qwen-image"]
        );
        // An operator's alias settles the bare key, and a listing uses it.
        registry.set_alias("qwen-image", "modelscope/qwen-image");
        assert_eq!(
            registry.find("qwen-image").unwrap().id(),
            "modelscope/qwen-image"
        );
        assert_eq!(
            listed(&registry),
            ["dashscope/qwen-image", "wan", "qwen-image"]
        );
        registry.set_alias("qwen-image", "dashscope/qwen-image");
        registry.set_alias("ms-qwen", "modelscope/qwen-image");
        assert_eq!(listed(&registry), ["qwen-image", "wan", "ms-qwen"]);
        assert_eq!(
            registry.find("ms-qwen").unwrap().id(),
            "modelscope/qwen-image"
        );
        // An alias that takes a full id leaves that model no name: it is not listed.
        let registry = self::registry();
        registry.set_alias("modelscope/qwen-image", "dashscope/wan");
        assert_eq!(listed(&registry), ["dashscope/qwen-image", "wan"]);
        for name in listed(&registry) {
            assert!(registry.find(&name).is_ok(), "{name}");
        }
    }
}
