//! The form the NodePool and NodeOverlay caches keep their objects in.
//!
//! serde_json's `Value` gives every JSON object a B-tree node of its own (about 600 bytes,
//! whatever the object holds), so a NodePool kept as a `DynamicObject` took about 14 KB of heap
//! for about 2 KB of JSON, and at 1,000 plans the two caches were most of the controller's
//! memory. A [`Compact`] keeps the few metadata fields ownership and the triggers read as they
//! are, and the rest as its JSON text; a reconcile inflates the few objects it reads.

use futures::{Stream, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::{DynamicResourceScope, Resource, TypeMeta};
use kube::runtime::watcher;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A watched object as a cache keeps it: of its metadata, what identifies it (name, namespace,
/// uid), who owns it and whether it is being deleted; everything else (labels, annotations,
/// spec, status) as JSON text. Its labels and annotations are read with [`Compact::labels`] and
/// [`Compact::annotations`], which shadow `ResourceExt`'s (those would see none).
#[derive(Clone, Debug)]
pub(crate) struct Compact {
    types: Option<TypeMeta>,
    pub metadata: ObjectMeta,
    body: Box<str>,
}

impl Compact {
    /// The object as the build reads it.
    pub fn inflate(&self) -> DynamicObject {
        // The text was written by `serde_json` from a `DynamicObject`, so it parses.
        let mut o: DynamicObject =
            serde_json::from_str(&self.body).unwrap_or_else(|_| DynamicObject {
                types: None,
                metadata: ObjectMeta::default(),
                data: serde_json::Value::Null,
            });
        let (m, kept) = (&mut o.metadata, &self.metadata);
        m.name.clone_from(&kept.name);
        m.namespace.clone_from(&kept.namespace);
        m.uid.clone_from(&kept.uid);
        m.owner_references.clone_from(&kept.owner_references);
        m.deletion_timestamp.clone_from(&kept.deletion_timestamp);
        o.types.clone_from(&self.types);
        o
    }

    /// The JSON text of everything but the kept metadata (keys sorted, so equal objects give
    /// equal text).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Its labels (parsed from the text). Nothing reads a cached object's labels today; this is
    /// here so that nothing can read `ResourceExt`'s empty ones by mistake.
    #[allow(dead_code)]
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.inflate().metadata.labels.unwrap_or_default()
    }

    /// Its annotations (parsed from the text).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.inflate().metadata.annotations.unwrap_or_default()
    }
}

impl From<DynamicObject> for Compact {
    fn from(o: DynamicObject) -> Self {
        let DynamicObject {
            types,
            mut metadata,
            data,
        } = o;
        let kept = ObjectMeta {
            name: metadata.name.take(),
            namespace: metadata.namespace.take(),
            uid: metadata.uid.take(),
            owner_references: metadata.owner_references.take(),
            deletion_timestamp: metadata.deletion_timestamp.take(),
            ..ObjectMeta::default()
        };
        let rest = DynamicObject {
            types: None,
            metadata,
            data,
        };
        Compact {
            types,
            metadata: kept,
            body: serde_json::to_string(&rest)
                .unwrap_or_default()
                .into_boxed_str(),
        }
    }
}

impl<'de> Deserialize<'de> for Compact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DynamicObject::deserialize(d).map(Compact::from)
    }
}

impl Resource for Compact {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A watch whose objects lose their managed fields and what every write changes
/// (resourceVersion, creationTimestamp, generation: a cached object's body changes only when its
/// content does), are slimmed by `slim`, and are then kept compact.
pub(crate) fn compacted(
    events: impl Stream<Item = watcher::Result<watcher::Event<DynamicObject>>>,
    slim: impl Fn(&mut DynamicObject),
) -> impl Stream<Item = watcher::Result<watcher::Event<Compact>>> {
    use watcher::Event;
    events.map_ok(move |e| {
        let small = |mut o: DynamicObject| {
            let m = &mut o.metadata;
            (m.resource_version, m.creation_timestamp, m.generation) = (None, None, None);
            m.managed_fields = None;
            slim(&mut o);
            Compact::from(o)
        };
        match e {
            Event::Apply(o) => Event::Apply(small(o)),
            Event::InitApply(o) => Event::InitApply(small(o)),
            Event::Delete(o) => Event::Delete(small(o)),
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        }
    })
}

/// Of an object's status, only its conditions' type, status, reason and message (not their
/// times): what the build reads, and what a change of is worth a reconcile.
pub(crate) fn keep_conditions(o: &mut DynamicObject) {
    let conditions: Vec<serde_json::Value> = o.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            serde_json::json!({
                "type": c["type"], "status": c["status"],
                "reason": c["reason"], "message": c["message"],
            })
        })
        .collect();
    if let Some(data) = o.data.as_object_mut() {
        data.insert(
            "status".to_string(),
            serde_json::json!({ "conditions": conditions }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodepool() -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": "p", "uid": "u", "labels": {"a": "b"}},
            "spec": {"template": {"spec": {"requirements": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5.large"]}
            ]}}, "weight": 3},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                "message": "", "lastTransitionTime": "2026-12-07T00:00:00Z"}], "resources": {"cpu": "2"}},
        }))
        .unwrap()
    }

    #[test]
    fn inflating_gives_back_the_object_with_only_its_conditions() {
        let mut want = nodepool();
        let live = compacted(
            futures::stream::iter([Ok(watcher::Event::Apply(nodepool()))]),
            keep_conditions,
        );
        let got = futures::executor::block_on(live.try_collect::<Vec<_>>()).unwrap();
        let [watcher::Event::Apply(c)] = got.as_slice() else {
            panic!("one Apply")
        };
        want.data["status"] = json!({"conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": ""}
        ]});
        assert_eq!(
            serde_json::to_value(c.inflate()).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        assert_eq!(c.metadata.name.as_deref(), Some("p"));
        assert_eq!(c.labels().get("a").map(String::as_str), Some("b"));
        assert!(c.metadata.labels.is_none());
        assert!(c.body().contains("\"weight\":3"));
        assert!(!c.body().contains("lastTransitionTime"));
    }

    #[test]
    fn deserializes_as_a_dynamic_object_does() {
        let text = serde_json::to_string(&nodepool()).unwrap();
        let c: Compact = serde_json::from_str(&text).unwrap();
        assert_eq!(
            serde_json::to_value(c.inflate()).unwrap(),
            serde_json::to_value(nodepool()).unwrap()
        );
    }
}
