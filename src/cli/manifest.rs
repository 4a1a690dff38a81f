//! `-f spotplan.yaml`: a SpotPlan manifest read and checked as the operator reads it, so the CLI
//! shows or renders exactly what the controller would plan for it.

use super::CliError;
use serde_json::Value;
use spotplan_api::validate::{self, PlanSpec};
use spotplan_api::{SpotPlan, SpotPlanSpec};
use spotplan_core::policy::churn;
use std::path::Path;

/// One SpotPlan from a file.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file, as the user named it.
    pub path: String,
    pub name: String,
    /// The spec as written.
    pub raw: SpotPlanSpec,
    /// The spec validated (with the controller's default `minNarrowInterval` where the manifest
    /// sets none).
    pub spec: PlanSpec,
}

impl Manifest {
    /// The SpotPlan as the API server would hold it on creation (no uid, generation 1, no
    /// status): what the build is given for `render --format nodepool`.
    pub fn spot_plan(&self) -> SpotPlan {
        let mut sp = SpotPlan::new(&self.name, self.raw.clone());
        sp.metadata.generation = Some(1);
        sp
    }
}

/// Reads the one SpotPlan in `path` (a YAML or JSON file, several documents allowed; other
/// kinds are skipped, as a GitOps file often holds more than the plan).
pub fn read(path: &Path) -> Result<Manifest, CliError> {
    let shown = path.display().to_string();
    let fail = |message: String| CliError::usage(&format!("-f {shown}"), message);
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| fail(format!("not YAML or JSON: {}", first_line(&e.to_string()))))?;
    let plans: Vec<&Value> = docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("SpotPlan"))
        .collect();
    let doc = match plans.as_slice() {
        [one] => *one,
        [] => {
            return Err(fail(
                "holds no SpotPlan (kind: SpotPlan, apiVersion: spotplan.dev/v1alpha1)".into(),
            ));
        }
        many => {
            return Err(fail(format!(
                "holds {} SpotPlans; give a file with one",
                many.len()
            )));
        }
    };
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api != "spotplan.dev/v1alpha1" {
        return Err(fail(format!(
            "apiVersion is '{api}': this spotplan reads spotplan.dev/v1alpha1"
        )));
    }
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| fail("metadata.name: is missing; name the SpotPlan".into()))?
        .to_string();
    let unknown = unknown_fields(doc);
    if !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        return Err(fail(format!(
            "SpotPlan in version \"v1alpha1\" cannot be handled as a SpotPlan: strict decoding error: {}",
            fields.join(", ")
        )));
    }
    let raw = doc.get("spec").cloned().unwrap_or(Value::Null);
    let raw: SpotPlanSpec = serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        fail(format!("{at}: {}", e.into_inner()))
    })?;
    let spec = validate::validate(&raw, churn::DEFAULT_MIN_INTERVAL)
        .map_err(|e| fail(format!("{}: {}", e.field, e.message)))?;
    Ok(Manifest {
        path: shown,
        name,
        raw,
        spec,
    })
}

/// A SpotPlan document as the API server decodes it: a field it does not know is an error there
/// (strict decoding), so it is here.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Document {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    spec: Option<SpotPlanSpec>,
    #[serde(default)]
    status: Option<Value>,
}

/// The fields of `doc` that a SpotPlan does not have, as the API server names them
/// (`spec.nodePool.requirements[0].operatr`).
fn unknown_fields(doc: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let _ = serde_ignored::deserialize(doc.clone(), |path| unknown.push(path_name(&path)))
        .map(|_: Document| ());
    unknown
}

fn path_name(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_name(parent)),
        Path::Map { parent, key } => match path_name(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_name(parent),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
