//! What the server saw: every request, and every write that changed an object.

use std::collections::VecDeque;
use std::fmt;

/// The kind of change a write made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// POST of a new object, or server-side apply creating one.
    Create,
    /// PUT.
    Update,
    /// PATCH with a JSON, merge or strategic merge patch.
    Patch,
    /// PATCH with `application/apply-patch+yaml` (server-side apply) that changed an existing object.
    Apply,
    /// DELETE: the object was removed, or marked with a deletionTimestamp while finalizers remain.
    Delete,
}

/// Who caused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A request over HTTP (the operator under test, or the test itself through kube).
    Client,
    /// The server's stand-in for kube-controller-manager's garbage collector (dependents of a
    /// deleted owner, dangling owner references, foreground and orphan deletion).
    GarbageCollector,
    /// A call on [`MemoryApiServer`](crate::MemoryApiServer) that plays a controller
    /// (`simulate_deployment_rollout`, `install_crds`).
    Simulation,
}

/// A write that changed something (no-op writes are not writes: no new resourceVersion, no event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// What kind of change.
    pub verb: Verb,
    /// Who made it.
    pub actor: Actor,
    /// `apps/v1`, `v1`, `sluice.dev/v1alpha1`.
    pub api_version: String,
    /// `Deployment`, `McpServer`.
    pub kind: String,
    /// None for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// `status` for writes to the status subresource.
    pub subresource: Option<String>,
    /// The field manager of the request, if any.
    pub field_manager: Option<String>,
    /// The resourceVersion the write produced.
    pub resource_version: u64,
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {} {} ", self.verb, self.api_version, self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(sub) = &self.subresource {
            write!(f, "/{sub}")?;
        }
        if let Some(m) = &self.field_manager {
            write!(f, " by {m}")?;
        }
        write!(f, " ({:?}, rv {})", self.actor, self.resource_version)
    }
}

/// The verb of a request, as Kubernetes audit logs name them (plus `Apply` and `Discovery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestVerb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH other than apply.
    Patch,
    /// PATCH with `application/apply-patch+yaml`.
    Apply,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
    /// `/api`, `/apis`, `/version` and group documents.
    Discovery,
    /// Anything else (unknown paths, unsupported methods).
    Other,
}

/// One request as the server answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// What the request did.
    pub verb: RequestVerb,
    /// The resource (plural) addressed, if any.
    pub resource: Option<String>,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name in the path, if any.
    pub name: Option<String>,
    /// The subresource in the path, if any.
    pub subresource: Option<String>,
    /// The HTTP status of the answer (for watches: of the response head).
    pub status: u16,
}

impl fmt::Display for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query)?;
        }
        write!(f, " -> {}", self.status)
    }
}

/// A ring buffer: the newest `capacity` records.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T: Clone> Ring<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    pub(crate) fn snapshot(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
    }
}
