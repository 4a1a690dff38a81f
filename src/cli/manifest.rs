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

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
