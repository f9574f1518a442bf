//! The provider registry: who serves which model, swapped atomically on plugin reload.
//!
//! Invariants: a lookup hands out an `Arc` of the provider, so a call that started on one
//! version finishes on it even if a reload replaces the entry meanwhile; the next lookup sees
//! the new version. Model ids are `provider/key`; bare keys resolve through the operator's
//! aliases, or when exactly one provider serves that key. Every listed model's parameter
//! schema is compiled once, when its provider is registered; a model whose schema easel cannot
//! check is left out (plugins with one are already refused at load).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use crate::engine::provider::{ModelInfo, Provider, ProviderSink, schema::ParamsSchema};

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
}

/// Why a model could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResolveError {
    /// No provider serves that id.
    #[error("Unknown model: {0}")]
    Unknown(String),
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
}

/// Every provider the host knows, keyed by id.
#[derive(Default)]
pub struct Registry {
    providers: RwLock<BTreeMap<String, Entry>>,
    aliases: RwLock<HashMap<String, String>>,
    defaults: RwLock<HashMap<String, String>>,
}

impl Registry {
    /// Adds or replaces a provider.
    pub fn upsert(&self, provider: Arc<dyn Provider>) {
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
        let models = Arc::new(models);
        self.providers
            .write()
            .expect("registry lock")
            .insert(id, Entry { provider, models });
    }

    /// Removes a provider; tasks already holding it finish on it.
    pub fn remove(&self, id: &str) {
        self.providers.write().expect("registry lock").remove(id);
    }

    /// The provider with this id.
    pub fn provider(&self, id: &str) -> Option<Arc<dyn Provider>> {
        self.providers
            .read()
            .expect("registry lock")
            .get(id)
            .map(|e| e.provider.clone())
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

    /// Every model with its provider, ordered by provider id then the provider's order.
    pub fn models(&self) -> Vec<Resolved> {
        let entries: Vec<Entry> = self
            .providers
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        entries
            .iter()
            .flat_map(|entry| entry.models.iter().map(|listed| entry.resolved(listed)))
            .collect()
    }

    /// The default model id for a capability: the operator's choice, else the first model
    /// serving it.
    pub fn default_for(&self, capability: &str) -> Option<String> {
        if let Some(id) = self.defaults.read().expect("registry lock").get(capability) {
            return Some(id.clone());
        }
        let providers = self.providers.read().expect("registry lock");
        providers.values().find_map(|entry| {
            entry
                .models
                .iter()
                .map(|(model, _)| model)
                .find(|m| m.capabilities.iter().any(|c| c == capability))
                .map(|m| format!("{}/{}", entry.provider.id(), m.key))
        })
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
        let found = self
            .find(&wanted)
            .ok_or_else(|| ResolveError::Unknown(wanted.clone()))?;
        if !found.model.capabilities.iter().any(|c| c == capability) {
            return Err(ResolveError::Unsupported {
                model: found.id(),
                capability: capability.into(),
            });
        }
        Ok(found)
    }

    /// Looks a model up by full id, alias, or unique bare key.
    pub fn find(&self, name: &str) -> Option<Resolved> {
        let name = self
            .aliases
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string());
        if let Some((provider_id, key)) = name.split_once('/') {
            let entry = self
                .providers
                .read()
                .expect("registry lock")
                .get(provider_id)
                .cloned();
            if let Some(entry) = entry {
                return entry
                    .models
                    .iter()
                    .find(|(model, _)| model.key == key)
                    .map(|listed| entry.resolved(listed));
            }
        }
        let mut matches = self.models().into_iter().filter(|r| r.model.key == name);
        let first = matches.next()?;
        matches.next().is_none().then_some(first)
    }
}

impl ProviderSink for Registry {
    fn upsert(&self, provider: Arc<dyn Provider>) {
        Registry::upsert(self, provider);
    }

    fn remove(&self, id: &str) {
        Registry::remove(self, id);
    }
}
