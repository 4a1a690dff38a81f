//! `spotplan render --apply`: the rendered request sent to AWS, idempotently. spotplan decides
//! what to run; EC2 Fleet, Spot Fleet and Auto Scaling decide how to run it.
//!
//! Each kind first looks for what an earlier run made, by the `spotplan.dev/name` tag (or, for
//! an Auto Scaling group, by its name and that tag), never by a client token alone: some
//! endpoints ignore tokens. With nothing found it creates; with one found it compares what the
//! plan renders with what AWS holds, changes nothing when they match, and otherwise updates in
//! place what the API can change (ModifyFleet, ModifySpotFleetRequest, UpdateAutoScalingGroup),
//! naming what it could not change. A refused call is one line: the IAM action, AWS's error
//! code and message.

mod asg;
mod ec2_fleet;
mod spot_fleet;

use crate::sources::aws::{Timeouts, one_line};
use aws_config::{Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use spotplan_core::Plan;
use spotplan_core::render::fleet::FleetInput;

/// The IAM actions `--apply` calls, besides those the launch template needs (also
/// `config/iam/spotplan-launch-policy.json`).
#[cfg(test)]
const PERMISSIONS: [&str; 11] = [
    "ec2:CreateFleet",
    "ec2:DescribeFleets",
    "ec2:ModifyFleet",
    "ec2:RequestSpotFleet",
    "ec2:DescribeSpotFleetRequests",
    "ec2:ModifySpotFleetRequest",
    "ec2:CreateTags",
    "autoscaling:CreateAutoScalingGroup",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:CreateOrUpdateTags",
];

/// What to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ec2Fleet,
    SpotFleet,
    AutoScalingGroup,
}

/// Why `--apply` failed, told apart for callers (every one is exit 5 on the command line).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchError {
    /// No usable credentials in the default chain.
    #[error("--apply: no AWS credentials: {0}")]
    NoCredentials(#[from] crate::sources::aws::NoCredentials),
    /// AWS refused or failed a call: `ec2:CreateFleet: Code: message`.
    #[error("{action}: {body}{hint}", hint = if self.denied() { " (grant it to the caller; see config/iam/spotplan-launch-policy.json)" } else { "" })]
    Call {
        /// The IAM action of the call.
        action: &'static str,
        /// AWS's error code, when it gave one.
        code: Option<String>,
        /// The code and message (or the transport error) on one line.
        body: String,
    },
    /// More than one fleet or request carries the plan's name tag.
    #[error("{action}: {} {kinds} are tagged {tag}={name} ({}); {fix}", ids.len(), ids.join(", "))]
    Ambiguous {
        action: &'static str,
        kinds: &'static str,
        tag: &'static str,
        name: String,
        ids: Vec<String>,
        fix: &'static str,
    },
    /// An Auto Scaling group of that name exists that spotplan did not make.
    #[error(
        "autoscaling:DescribeAutoScalingGroups: an Auto Scaling group named {name} exists without the tag {tag}={name}: spotplan did not make it and will not change it; pick another --name"
    )]
    NotOurs { name: String, tag: &'static str },
    /// AWS answered without the id of what it made.
    #[error("{action}: the answer has no {field}")]
    NoId {
        action: &'static str,
        field: &'static str,
    },
    /// `--valid-until` cannot be sent as AWS's date-time.
    #[error("--valid-until: {0}")]
    ValidUntil(String),
}

impl LaunchError {
    /// Whether AWS said the caller lacks a permission.
    pub fn denied(&self) -> bool {
        matches!(self, LaunchError::Call { code: Some(c), .. }
            if matches!(c.as_str(), "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException"))
    }
}

/// What `--apply` did: the id to print, and lines for stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub id: String,
    pub notes: Vec<String>,
}

/// Renders the plan for `kind` and applies it in the plan's region.
pub async fn apply(
    kind: Kind,
    plan: &Plan,
    input: &FleetInput,
    timeouts: Timeouts,
) -> Result<Applied, LaunchError> {
    let config = crate::sources::aws::sdk_config(timeouts).await;
    crate::sources::aws::check_credentials(&config).await?;
    let config = in_region(&config, &plan.region);
    match kind {
        Kind::Ec2Fleet => {
            let (want, _) = spotplan_core::render::fleet::ec2_fleet(plan, input);
            ec2_fleet::apply(&aws_sdk_ec2::Client::new(&config), &want, &input.name).await
        }
        Kind::SpotFleet => {
            let role = input.fleet_role.as_deref().unwrap_or_default();
            let (want, _) = spotplan_core::render::fleet::spot_fleet(plan, input, role);
            spot_fleet::apply(&aws_sdk_ec2::Client::new(&config), &want, &input.name).await
        }
        Kind::AutoScalingGroup => {
            let (want, _) = spotplan_core::render::fleet::auto_scaling_group(plan, input);
            asg::apply(&aws_sdk_autoscaling::Client::new(&config), &want).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_grants_every_call() {
        let granted = crate::sources::aws::granted(include_str!(
            "../../config/iam/spotplan-launch-policy.json"
        ));
        assert_eq!(granted, PERMISSIONS);
    }

    #[test]
    fn differences_split_into_what_can_and_cannot_change() {
        let facts = [
            Fact::new("a", "1".into(), Some("1".into()), true),
            Fact::new("b", "2".into(), Some("3".into()), true),
            Fact::new("c", "4".into(), Some("5".into()), false),
            Fact::new("d", "6".into(), None, false),
        ];
        let diff = Diff::of(&facts);
        assert_eq!(diff.change, ["b"]);
        assert_eq!(diff.cannot, ["c: 5 -> 4"]);
        let notes = diff.notes("fleet-1", true, "recreate it");
        assert_eq!(notes[0], "updated fleet-1: b");
        assert!(notes[1].starts_with("warning: not changed on fleet-1 (the API cannot change it in place; recreate it): c: 5 -> 4"));
        assert_eq!(
            Diff::of(&facts[..1]).notes("fleet-1", true, ""),
            ["unchanged: fleet-1 already matches the plan"]
        );
    }

    #[test]
    fn templates_match_by_id_or_name_and_symbolic_versions_match_numbers() {
        use spotplan_core::render::fleet::LaunchTemplate;
        let by_name = LaunchTemplate::parse("web", "$Latest");
        assert!(!template_fact(&by_name, Some((Some("lt-1"), Some("web"), Some("3")))).differs());
        assert!(template_fact(&by_name, Some((Some("lt-1"), Some("api"), Some("3")))).differs());
        let pinned = LaunchTemplate::parse("lt-0abc", "2");
        assert!(!template_fact(&pinned, Some((Some("lt-0abc"), None, Some("2")))).differs());
        assert!(template_fact(&pinned, Some((Some("lt-0abc"), None, Some("3")))).differs());
        assert!(template_fact(&pinned, Some((Some("lt-0def"), None, Some("2")))).differs());
    }
}

fn in_region(config: &SdkConfig, region: &str) -> SdkConfig {
    config
        .to_builder()
        .region(Region::new(region.to_string()))
        .build()
}

/// A refused or failed call: `ec2:CreateFleet: Code: message` on one line.
fn call_error<E, R>(action: &'static str, e: SdkError<E, R>) -> LaunchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let body = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {}", m.replace('\n', " ")),
        (Some(c), None) => c.to_string(),
        _ => one_line(&e),
    };
    LaunchError::Call {
        action,
        code: e.code().map(String::from),
        body,
    }
}

/// One property compared between what the plan renders and what AWS holds.
#[derive(Debug, Clone, PartialEq)]
struct Fact {
    what: &'static str,
    /// What the plan renders.
    want: String,
    /// What AWS reports; None when it does not report it (then it is not compared).
    have: Option<String>,
    /// Whether the update call can change it.
    changeable: bool,
}

impl Fact {
    fn new(what: &'static str, want: String, have: Option<String>, changeable: bool) -> Fact {
        Fact {
            what,
            want,
            have,
            changeable,
        }
    }

    fn differs(&self) -> bool {
        self.have.as_ref().is_some_and(|h| *h != self.want)
    }
}

/// What differs, split into what the update call can change and what it cannot (with the
/// values, for the user).
struct Diff {
    change: Vec<&'static str>,
    cannot: Vec<String>,
}

impl Diff {
    fn of(facts: &[Fact]) -> Diff {
        let differing = facts.iter().filter(|f| f.differs());
        let (change, cannot): (Vec<&Fact>, Vec<&Fact>) = differing.partition(|f| f.changeable);
        Diff {
            change: change.iter().map(|f| f.what).collect(),
            cannot: cannot
                .iter()
                .map(|f| {
                    format!(
                        "{}: {} -> {}",
                        f.what,
                        f.have.as_deref().unwrap_or("?"),
                        f.want
                    )
                })
                .collect(),
        }
    }

    /// The stderr lines for an update of `what` (`fleet-123`), `updated` telling whether the
    /// changeable part was sent.
    fn notes(&self, what: &str, updated: bool, recreate: &str) -> Vec<String> {
        let mut notes = Vec::new();
        if self.change.is_empty() && self.cannot.is_empty() {
            notes.push(format!("unchanged: {what} already matches the plan"));
        }
        if updated && !self.change.is_empty() {
            notes.push(format!("updated {what}: {}", self.change.join(", ")));
        }
        if !self.cannot.is_empty() {
            notes.push(format!(
                "warning: not changed on {what} (the API cannot change it in place; {recreate}): {}",
                self.cannot.join("; ")
            ));
        }
        notes
    }
}

/// Overrides written canonically (sorted), so order does not count as a change.
fn canonical(mut items: Vec<String>) -> String {
    items.sort();
    items.join(" ")
}

/// An override: `type@subnet-or-zone*weight#priority`.
fn override_text(
    ty: &str,
    place: Option<&str>,
    weight: Option<f64>,
    priority: Option<f64>,
) -> String {
    let mut s = ty.to_string();
    if let Some(p) = place {
        s.push('@');
        s.push_str(p);
    }
    if let Some(w) = weight {
        s.push_str(&format!("*{w}"));
    }
    if let Some(p) = priority {
        s.push_str(&format!("#{p}"));
    }
    s
}

/// A launch template as the plan names it, and whether AWS's report names the same one: by the
/// same ID or name, and the same version unless the plan asks for $Latest or $Default (which
/// AWS may report resolved to a number).
fn template_fact(
    want: &spotplan_core::render::fleet::LaunchTemplate,
    have: Option<(Option<&str>, Option<&str>, Option<&str>)>,
) -> Fact {
    let text = |id: Option<&str>, name: Option<&str>, version: Option<&str>| {
        format!(
            "{} version {}",
            id.or(name).unwrap_or("?"),
            version.unwrap_or("?")
        )
    };
    let wanted = text(
        want.id.as_deref(),
        want.name.as_deref(),
        Some(&want.version),
    );
    let have = have.map(|(id, name, version)| {
        let same_template = match (&want.id, &want.name) {
            (Some(w), _) => id == Some(w.as_str()),
            (None, Some(w)) => name == Some(w.as_str()) || (name.is_none() && id.is_some()),
            (None, None) => false,
        };
        let symbolic = want.version.starts_with('$');
        let same_version = version == Some(want.version.as_str())
            || (symbolic && version.is_some_and(|v| v.parse::<u64>().is_ok()));
        if same_template && same_version {
            wanted.clone()
        } else {
            text(id, name, version)
        }
    });
    Fact::new("launch template", wanted, have, true)
}

/// The plan's tags as EC2 tags.
fn ec2_tags(tags: &[spotplan_core::render::fleet::Tag]) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter()
        .map(|t| {
            aws_sdk_ec2::types::Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
        })
        .collect()
}

/// spotplan's own tags (the user's other tags are theirs and never compared or changed).
fn tags_fact(want: &[spotplan_core::render::fleet::Tag], have: &[(&str, &str)]) -> Fact {
    let wanted = canonical(
        want.iter()
            .map(|t| format!("{}={}", t.key, t.value))
            .collect(),
    );
    let had = canonical(
        have.iter()
            .filter(|(k, _)| want.iter().any(|t| t.key == *k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
    );
    Fact::new("tags", wanted, Some(had), true)
}

/// Rewrites spotplan's tags on an EC2 resource (a fleet or a Spot Fleet request).
async fn retag_ec2(
    client: &aws_sdk_ec2::Client,
    id: &str,
    tags: &[spotplan_core::render::fleet::Tag],
) -> Result<(), LaunchError> {
    client
        .create_tags()
        .resources(id)
        .set_tags(Some(ec2_tags(tags)))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| call_error("ec2:CreateTags", e))
}
