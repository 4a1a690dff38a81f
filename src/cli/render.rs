//! `spotplan render`: a plan as the request body of the API that launches it (EC2 Fleet, Spot
//! Fleet, Auto Scaling group), as the NodePools the operator would write, or as the kwok
//! provider's instance-types file. `--apply` makes the call itself.

use super::args::{self, DataArgs};
use super::recommend::{Asked, Decided, RequestArgs, decide};
use super::{CliError, exit};
use clap::{Args, ValueEnum};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use serde_json::{Value, json};
use spotplan_api::build::nodepools::for_git;
use spotplan_api::build::{self, Observed};
use spotplan_api::crd::{CapacitySpec, NodeClassRef, OnDemandBase};
use spotplan_api::freshness::Freshness;
use spotplan_api::names::conditions;
use spotplan_api::{SpotPlan, validate};
use spotplan_core::MarketData;
use spotplan_core::Plan;
use spotplan_core::render::fleet::{
    self, AllocationStrategy, FleetInput, FleetType, LaunchTemplate, Placement, Trimmed,
};

/// What `render` prints.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFormat {
    /// EC2 Fleet: the body of CreateFleet (`aws ec2 create-fleet --cli-input-json`).
    Ec2Fleet,
    /// Spot Fleet: the body of RequestSpotFleet (`aws ec2 request-spot-fleet --cli-input-json`).
    SpotFleet,
    /// Auto Scaling group: the body of CreateAutoScalingGroup
    /// (`aws autoscaling create-auto-scaling-group --cli-input-json`).
    Asg,
    /// The Karpenter NodePools the operator would write, for Git.
    Nodepool,
    /// The instance-types file of Karpenter's kwok provider for --region (the whole catalog,
    /// with prices per zone).
    KwokInstanceTypes,
}

impl RenderFormat {
    fn name(self) -> &'static str {
        match self {
            RenderFormat::Ec2Fleet => "ec2-fleet",
            RenderFormat::SpotFleet => "spot-fleet",
            RenderFormat::Asg => "asg",
            RenderFormat::Nodepool => "nodepool",
            RenderFormat::KwokInstanceTypes => "kwok-instance-types",
        }
    }

    fn is_fleet(self) -> bool {
        matches!(
            self,
            RenderFormat::Ec2Fleet | RenderFormat::SpotFleet | RenderFormat::Asg
        )
    }
}

/// How the document is printed.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    Json,
    Yaml,
}

/// Where and how the capacity launches (the fleet formats), and the NodePool's node class.
#[derive(Args, Debug, Clone)]
pub struct LaunchArgs {
    /// Launch template, by ID (lt-...) or name: the AMI, security groups and user data.
    /// Required by ec2-fleet, spot-fleet and asg.
    #[arg(long, value_name = "ID|NAME")]
    pub launch_template: Option<String>,
    /// Launch template version: a number, $Latest or $Default.
    #[arg(long, value_name = "VERSION", default_value = "$Latest")]
    pub launch_template_version: String,
    /// Subnet to launch in (repeatable, or comma-separated): overrides are spread over every
    /// subnet given; give subnets in three or more zones.
    #[arg(long = "subnet", value_name = "ID", value_delimiter = ',')]
    pub subnets: Vec<String>,
    /// Availability zone to launch in, instead of subnets (repeatable, or comma-separated).
    #[arg(
        long = "availability-zone",
        value_name = "ZONE",
        value_delimiter = ',',
        conflicts_with = "subnets"
    )]
    pub zones: Vec<String>,
    /// vCPUs of on-demand capacity under the spot capacity (default: the manifest's
    /// spec.capacity.onDemandBase.cpu with -f, else 0).
    #[arg(long, value_name = "N", value_parser = args::on_demand_cpu)]
    pub on_demand_base_cpu: Option<u32>,
    /// asg: percent of the capacity above the base that is on-demand (default 0).
    #[arg(long, value_name = "PERCENT", value_parser = args::percentage)]
    pub on_demand_percentage: Option<u8>,
    /// Spot allocation strategy: price-capacity-optimized (default), capacity-optimized,
    /// capacity-optimized-prioritized (follows the plan's ranking), lowest-price, diversified.
    #[arg(long, value_name = "STRATEGY", value_parser = AllocationStrategy::parse)]
    pub allocation_strategy: Option<AllocationStrategy>,
    /// ec2-fleet and spot-fleet: maintain (default), request, or instant (ec2-fleet only).
    #[arg(long = "type", value_name = "TYPE", value_parser = FleetType::parse)]
    pub fleet_type: Option<FleetType>,
    /// spot-fleet: the ARN of the IAM role that lets Spot Fleet launch, tag and terminate
    /// instances (required).
    #[arg(long, value_name = "ARN")]
    pub fleet_role: Option<String>,
    /// spot-fleet: when the request expires (RFC 3339, e.g. 2027-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = args::future_time)]
    pub valid_until: Option<String>,
    /// The fleet's name: the Auto Scaling group's name, and the spotplan.dev/name tag that
    /// --apply finds it by (default: the manifest's name with -f, else "spotplan").
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// nodepool: the EC2NodeClass the NodePools use (default "default"; -f uses the manifest's).
    #[arg(long, value_name = "NAME")]
    pub node_class: Option<String>,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// What to render.
    #[arg(long, value_enum)]
    pub format: RenderFormat,
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub launch: LaunchArgs,
    /// Make the call (CreateFleet, RequestSpotFleet, CreateAutoScalingGroup) and print the id;
    /// run again to update what it made in place. Default credential chain; AWS_ENDPOINT_URL
    /// is honoured.
    #[arg(long)]
    pub apply: bool,
    /// With --format nodepool: leave out the Karpenter NodeOverlays that price the plan's
    /// ranking into Karpenter's choice (printed by default; they need Karpenter's NodeOverlay
    /// feature gate).
    #[arg(long)]
    pub no_overlays: bool,
    /// json or yaml (default: yaml for nodepool, json otherwise, as --cli-input-json takes).
    #[arg(long, short = 'o', value_enum, value_name = "FORMAT")]
    pub output: Option<DocFormat>,
    #[command(flatten)]
    pub data: DataArgs,
}

pub async fn run(args: RenderArgs) -> Result<(), CliError> {
    check_flags(&args)?;
    if args.format == RenderFormat::KwokInstanceTypes {
        return kwok_instance_types(&args).await;
    }
    let asked = args.request.asked()?;
    if args.format.is_fleet() && asked.request.architectures.len() != 1 {
        let (field, fix) = match &asked.manifest {
            Some(m) => (
                format!("-f {}: spec.architectures", m.path),
                "set it to [amd64] or [arm64]",
            ),
            None => (
                "--arch".to_string(),
                "give --arch amd64 or --arch arm64 (or --no-arm)",
            ),
        };
        return Err(CliError::usage(
            &field,
            format!(
                "--format {} needs one architecture, the one of the launch template's AMI: {fix}",
                args.format.name()
            ),
        ));
    }
    let input = fleet_input(&args, &asked)?;
    let Decided { plan, market, .. } = decide(&asked, &args.data).await?;
    let (doc, trimmed) = match args.format {
        RenderFormat::Nodepool => (nodepools(&args, &asked, &market)?, Trimmed::default()),
        format => fleet_document(format, &plan, &input),
    };
    if !trimmed.types_left_out.is_empty() {
        eprintln!(
            "note: {} takes at most {} overrides: kept the plan's best {} types, left out {}",
            args.format.name(),
            trimmed.limit,
            plan.candidates.len() - trimmed.types_left_out.len(),
            trimmed.types_left_out.join(", ")
        );
    }
    if args.format.is_fleet() && plan.vcpus > fleet::FLEET_TARGET_QUOTA {
        eprintln!(
            "note: a target of {} vCPUs is above the default quota of {} units per fleet; ask AWS to raise it or split the workload",
            plan.vcpus,
            fleet::FLEET_TARGET_QUOTA
        );
    }
    if args.apply {
        let timeouts = crate::sources::aws::Timeouts::within(args.data.aws_timeout);
        let applied = crate::launch::apply(args.format.launch_kind(), &plan, &input, timeouts)
            .await
            .map_err(|e| CliError {
                message: e.to_string(),
                code: exit::AWS,
            })?;
        for note in &applied.notes {
            eprintln!("{note}");
        }
        println!("{}", applied.id);
        return Ok(());
    }
    print_doc(
        &doc,
        args.output.unwrap_or(match args.format {
            RenderFormat::Nodepool => DocFormat::Yaml,
            _ => DocFormat::Json,
        }),
    );
    Ok(())
}

impl RenderFormat {
    fn launch_kind(self) -> crate::launch::Kind {
        match self {
            RenderFormat::Ec2Fleet => crate::launch::Kind::Ec2Fleet,
            RenderFormat::SpotFleet => crate::launch::Kind::SpotFleet,
            _ => crate::launch::Kind::AutoScalingGroup,
        }
    }
}

/// Flags that do not apply to the format are refused, not ignored.
fn check_flags(args: &RenderArgs) -> Result<(), CliError> {
    let f = args.format;
    let l = &args.launch;
    let only = |flag: &str, given: bool, allowed: &[RenderFormat]| {
        if given && !allowed.contains(&f) {
            let names: Vec<&str> = allowed.iter().map(|a| a.name()).collect();
            return Err(CliError::usage(
                flag,
                format!(
                    "does not apply to --format {}; only to {}",
                    f.name(),
                    names.join(", ")
                ),
            ));
        }
        Ok(())
    };
    use RenderFormat::*;
    only(
        "--launch-template",
        l.launch_template.is_some(),
        &[Ec2Fleet, SpotFleet, Asg],
    )?;
    only(
        "--subnet",
        !l.subnets.is_empty(),
        &[Ec2Fleet, SpotFleet, Asg],
    )?;
    only(
        "--availability-zone",
        !l.zones.is_empty(),
        &[Ec2Fleet, SpotFleet, Asg],
    )?;
    only(
        "--on-demand-base-cpu",
        l.on_demand_base_cpu.is_some(),
        &[Ec2Fleet, SpotFleet, Asg, Nodepool],
    )?;
    only(
        "--on-demand-percentage",
        l.on_demand_percentage.is_some(),
        &[Asg],
    )?;
    only(
        "--allocation-strategy",
        l.allocation_strategy.is_some(),
        &[Ec2Fleet, SpotFleet, Asg],
    )?;
    only("--type", l.fleet_type.is_some(), &[Ec2Fleet, SpotFleet])?;
    only("--fleet-role", l.fleet_role.is_some(), &[SpotFleet])?;
    only("--valid-until", l.valid_until.is_some(), &[SpotFleet])?;
    only("--name", l.name.is_some(), &[Ec2Fleet, SpotFleet, Asg])?;
    only("--node-class", l.node_class.is_some(), &[Nodepool])?;
    only("--apply", args.apply, &[Ec2Fleet, SpotFleet, Asg])?;
    if f == KwokInstanceTypes && (args.request.file.is_some() || args.request.cores.is_some()) {
        return Err(CliError::usage(
            "--format kwok-instance-types",
            "renders the whole catalog of --region; it takes no request (-f, --cores)",
        ));
    }
    if f.is_fleet() && l.launch_template.is_none() {
        return Err(CliError::usage(
            "--launch-template",
            format!(
                "is required for --format {}: the launch template (ID lt-... or name) with the AMI, security groups and user data",
                f.name()
            ),
        ));
    }
    if f == Asg && l.subnets.is_empty() && l.zones.is_empty() {
        return Err(CliError::usage(
            "--subnet",
            "--format asg needs --subnet (or --availability-zone): an Auto Scaling group names where it launches",
        ));
    }
    if f == SpotFleet {
        match l.fleet_role.as_deref() {
            None => {
                return Err(CliError::usage(
                    "--fleet-role",
                    "is required for --format spot-fleet: the ARN of the IAM role Spot Fleet launches and terminates instances with, e.g. arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
                ));
            }
            Some(arn) if !(arn.starts_with("arn:aws") && arn.contains(":role/")) => {
                return Err(CliError::usage(
                    "--fleet-role",
                    format!("'{arn}' is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                ));
            }
            Some(_) => {}
        }
        if l.fleet_type == Some(FleetType::Instant) {
            return Err(CliError::usage(
                "--type",
                "instant is an EC2 Fleet type; a Spot Fleet is maintain or request",
            ));
        }
    }
    if let Some(bad) = l.subnets.iter().find(|s| !is_id(s, "subnet-")) {
        return Err(CliError::usage(
            "--subnet",
            format!("'{bad}' is not a subnet ID (subnet- and hex digits)"),
        ));
    }
    if let Some(name) = &l.name
        && (name.is_empty() || name.len() > 255 || name.contains(':'))
    {
        return Err(CliError::usage(
            "--name",
            "must be 1 to 255 characters without ':' (an Auto Scaling group name)",
        ));
    }
    Ok(())
}

fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The fleet settings from the flags (and the manifest).
fn fleet_input(args: &RenderArgs, asked: &Asked) -> Result<FleetInput, CliError> {
    let l = &args.launch;
    let region = &asked.request.region;
    if let Some(bad) = l.zones.iter().find(|z| {
        z.strip_prefix(region.as_str())
            .is_none_or(|rest| rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_lowercase()))
    }) {
        return Err(CliError::usage(
            "--availability-zone",
            format!("'{bad}' is not a zone of {region} (e.g. {region}a)"),
        ));
    }
    let manifest_base = asked.manifest.as_ref().and_then(|m| m.spec.on_demand_base);
    let base = l.on_demand_base_cpu.or(manifest_base).unwrap_or(0);
    if base > asked.request.vcpus {
        return Err(CliError::usage(
            "--on-demand-base-cpu",
            format!(
                "{base} is above the request's {} vCPUs",
                asked.request.vcpus
            ),
        ));
    }
    Ok(FleetInput {
        name: l
            .name
            .clone()
            .or_else(|| asked.manifest.as_ref().map(|m| m.name.clone()))
            .unwrap_or_else(|| "spotplan".into()),
        launch_template: LaunchTemplate::parse(
            l.launch_template.as_deref().unwrap_or(""),
            &l.launch_template_version,
        ),
        placement: if !l.subnets.is_empty() {
            Placement::Subnets(l.subnets.clone())
        } else if !l.zones.is_empty() {
            Placement::Zones(l.zones.clone())
        } else {
            Placement::Template
        },
        on_demand_base_vcpus: base,
        on_demand_percentage: l.on_demand_percentage.unwrap_or(0),
        allocation_strategy: l
            .allocation_strategy
            .unwrap_or(AllocationStrategy::PriceCapacityOptimized),
        fleet_type: l.fleet_type.unwrap_or(FleetType::Maintain),
        fleet_role: l.fleet_role.clone(),
        valid_until: l.valid_until.clone(),
    })
}

fn fleet_document(format: RenderFormat, plan: &Plan, input: &FleetInput) -> (Value, Trimmed) {
    fn json<T: Serialize>((doc, trimmed): (T, Trimmed)) -> (Value, Trimmed) {
        (
            serde_json::to_value(doc).expect("requests serialize"),
            trimmed,
        )
    }
    match format {
        RenderFormat::Ec2Fleet => json(fleet::ec2_fleet(plan, input)),
        RenderFormat::SpotFleet => json(fleet::spot_fleet(
            plan,
            input,
            input.fleet_role.as_deref().unwrap_or_default(),
        )),
        _ => json(fleet::auto_scaling_group(plan, input)),
    }
}

/// The NodePools the operator would write for this plan, from the operator's own build, without
/// its ownership marks (no owner reference or owner UID: these are for Git, not for a controller
/// to adopt).
fn nodepools(args: &RenderArgs, asked: &Asked, market: &MarketData) -> Result<Value, CliError> {
    let sp = spot_plan(args, asked);
    let freshness = Freshness {
        fresh: true,
        reason: "Fresh",
        message: String::new(),
        sources: Vec::new(),
    };
    let desired = build::build(
        &Observed {
            plan: &sp,
            freshness: &freshness,
            market: Some(market),
            nodepools: &[],
            signals: &build::Signals::default(),
            placement: None,
            overlays: build::SeenOverlays {
                support: if args.no_overlays {
                    build::overlays::Support::Off
                } else {
                    build::overlays::Support::Served
                },
                live: &[],
            },
            now: jiff::Timestamp::now(),
        },
        &build::Settings::default(),
    );
    if let build::Standing::NotReady(reason) = desired.standing {
        let message = desired
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        return Err(CliError::usage(
            "--format nodepool",
            format!("{}: {message}", reason.as_str()),
        ));
    }
    let items: Vec<Value> = desired
        .writes
        .into_iter()
        .map(|w| for_git(w.pool.object))
        .chain(
            desired
                .overlay_writes
                .into_iter()
                .map(|w| for_git(w.overlay.object)),
        )
        .collect();
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// The SpotPlan to build: the manifest's (with `--on-demand-base-cpu` over its base), or one made
/// from the request flags and `--node-class`.
fn spot_plan(args: &RenderArgs, asked: &Asked) -> SpotPlan {
    let base = args.launch.on_demand_base_cpu.map(|b| {
        (b > 0).then(|| OnDemandBase {
            cpu: Quantity(b.to_string()),
        })
    });
    match &asked.manifest {
        Some(m) => {
            let mut sp = m.spot_plan();
            if let Some(base) = base {
                sp.spec
                    .capacity
                    .get_or_insert_with(Default::default)
                    .on_demand_base = base;
            }
            sp
        }
        None => {
            let class = NodeClassRef {
                group: "karpenter.k8s.aws".into(),
                kind: "EC2NodeClass".into(),
                name: args
                    .launch
                    .node_class
                    .as_deref()
                    .unwrap_or("default")
                    .into(),
            };
            let mut spec = validate::spec_of(&asked.request, class);
            if let Some(Some(base)) = base {
                spec.capacity = Some(CapacitySpec {
                    on_demand_base: Some(base),
                    ..Default::default()
                });
            }
            let mut sp = SpotPlan::new("spotplan", spec);
            sp.metadata.generation = Some(1);
            sp
        }
    }
}

fn print_doc(doc: &Value, format: DocFormat) {
    match format {
        DocFormat::Json => println!("{}", serde_json::to_string_pretty(doc).expect("JSON")),
        DocFormat::Yaml => match doc.get("items").and_then(Value::as_array) {
            // A List prints as one YAML document per object, as kubectl and Git expect.
            Some(items) if doc.get("kind") == Some(&json!("List")) => {
                print!("{}", serde_saphyr::to_string_multiple(items).expect("YAML"));
            }
            _ => print!("{}", serde_saphyr::to_string(doc).expect("YAML")),
        },
    }
}

async fn kwok_instance_types(args: &RenderArgs) -> Result<(), CliError> {
    let region = args.request.region.trim();
    let market = args.data.load(Some(&[region])).await?.join();
    let id = market.catalog().region(region).ok_or_else(|| {
        CliError::usage(
            "--region",
            format!("the embedded catalog has no offerings in '{region}'"),
        )
    })?;
    let doc = spotplan_core::render::kwok_instance_types(&market, id);
    if doc.as_array().is_some_and(Vec::is_empty) {
        // An empty file would make Karpenter launch nothing, with no word of why.
        return Err(CliError::usage(
            "--prices",
            format!(
                "no instance type offered in {region} has a price, and Karpenter's kwok provider needs one per offering: pass --prices PATH (CSV region,instance_type,on_demand_usd_per_hour,spot_usd_per_hour) or --aws for live prices"
            ),
        ));
    }
    print_doc(
        &serde_json::to_value(doc).expect("JSON"),
        args.output.unwrap_or(DocFormat::Json),
    );
    Ok(())
}
