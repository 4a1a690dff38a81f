//! Spot Fleet: RequestSpotFleet, found again by its tag through DescribeSpotFleetRequests,
//! changed with ModifySpotFleetRequest (overrides, target and on-demand capacity).

use super::{
    Applied, Diff, Fact, LaunchError, call_error, canonical, ec2_tags, override_text, tags_fact,
    template_fact,
};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    AllocationStrategy, BatchState, FleetLaunchTemplateSpecification, FleetType, InstanceType,
    LaunchTemplateConfig, LaunchTemplateOverrides, ResourceType, SpotFleetRequestConfig,
    SpotFleetRequestConfigData, TagSpecification,
};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use spotplan_core::render::fleet::{NAME_TAG, SpotFleet, SpotFleetConfig};

pub async fn apply(client: &Client, want: &SpotFleet, name: &str) -> Result<Applied, LaunchError> {
    let found = find(client, name).await?;
    match found.as_slice() {
        [] => create(client, &want.spot_fleet_request_config).await,
        [have] => update(client, &want.spot_fleet_request_config, have).await,
        many => Err(LaunchError::Ambiguous {
            action: "ec2:DescribeSpotFleetRequests",
            kinds: "Spot Fleet requests",
            tag: NAME_TAG,
            name: name.into(),
            ids: many
                .iter()
                .filter_map(SpotFleetRequestConfig::spot_fleet_request_id)
                .map(String::from)
                .collect(),
            fix: "cancel all but one, or pick another --name",
        }),
    }
}

/// Tags of a request: AWS reports them on the request, and on its config's tag specifications.
fn tags_of(r: &SpotFleetRequestConfig) -> Vec<(&str, &str)> {
    let on_config = r
        .spot_fleet_request_config()
        .into_iter()
        .flat_map(|c| c.tag_specifications())
        .flat_map(|s| s.tags());
    r.tags()
        .iter()
        .chain(on_config)
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect()
}

/// Live requests (submitted, active or being modified) tagged with this name.
async fn find(client: &Client, name: &str) -> Result<Vec<SpotFleetRequestConfig>, LaunchError> {
    let mut pages = client
        .describe_spot_fleet_requests()
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| call_error("ec2:DescribeSpotFleetRequests", e))?;
        out.extend(
            page.spot_fleet_request_configs()
                .iter()
                .filter(|r| {
                    matches!(
                        r.spot_fleet_request_state(),
                        Some(BatchState::Submitted | BatchState::Active | BatchState::Modifying)
                    ) && tags_of(r).contains(&(NAME_TAG, name))
                })
                .cloned(),
        );
    }
    Ok(out)
}

fn configs(want: &SpotFleetConfig) -> Vec<LaunchTemplateConfig> {
    want.launch_template_configs
        .iter()
        .map(|c| {
            let lt = &c.launch_template_specification;
            LaunchTemplateConfig::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecification::builder()
                        .set_launch_template_id(lt.id.clone())
                        .set_launch_template_name(lt.name.clone())
                        .version(&lt.version)
                        .build(),
                )
                .set_overrides(Some(
                    c.overrides
                        .iter()
                        .map(|o| {
                            LaunchTemplateOverrides::builder()
                                .instance_type(InstanceType::from(o.instance_type.as_str()))
                                .set_subnet_id(o.subnet_id.clone())
                                .set_availability_zone(o.availability_zone.clone())
                                .weighted_capacity(o.weighted_capacity)
                                .priority(o.priority)
                                .build()
                        })
                        .collect(),
                ))
                .build()
        })
        .collect()
}

async fn create(client: &Client, want: &SpotFleetConfig) -> Result<Applied, LaunchError> {
    let valid_until = want
        .valid_until
        .as_deref()
        .map(|s| DateTime::from_str(s, Format::DateTime))
        .transpose()
        .map_err(|e| LaunchError::ValidUntil(e.to_string()))?;
    let config = SpotFleetRequestConfigData::builder()
        .iam_fleet_role(&want.iam_fleet_role)
        .allocation_strategy(AllocationStrategy::from(want.allocation_strategy.as_str()))
        .target_capacity(want.target_capacity as i32)
        .on_demand_target_capacity(want.on_demand_target_capacity as i32)
        .set_launch_template_configs(Some(configs(want)))
        .terminate_instances_with_expiration(want.terminate_instances_with_expiration)
        .set_valid_until(valid_until)
        .r#type(FleetType::from(want.fleet_type.as_str()))
        .client_token(&want.client_token)
        .set_tag_specifications(Some(
            want.tag_specifications
                .iter()
                .map(|s| {
                    TagSpecification::builder()
                        .resource_type(ResourceType::from(s.resource_type.as_str()))
                        .set_tags(Some(ec2_tags(&s.tags)))
                        .build()
                })
                .collect(),
        ))
        .build();
    let out = client
        .request_spot_fleet()
        .spot_fleet_request_config(config)
        .send()
        .await
        .map_err(|e| call_error("ec2:RequestSpotFleet", e))?;
    let id = out
        .spot_fleet_request_id()
        .ok_or(LaunchError::NoId {
            action: "ec2:RequestSpotFleet",
            field: "SpotFleetRequestId",
        })?
        .to_string();
    let overrides: usize = want
        .launch_template_configs
        .iter()
        .map(|c| c.overrides.len())
        .sum();
    Ok(Applied {
        notes: vec![format!(
            "created Spot Fleet request {id}: {overrides} overrides, target {} vCPUs",
            want.target_capacity
        )],
        id,
    })
}

fn facts(want: &SpotFleetConfig, have: &SpotFleetRequestConfig) -> Vec<Fact> {
    let data = have.spot_fleet_request_config();
    let wanted = canonical(
        want.launch_template_configs
            .iter()
            .flat_map(|c| &c.overrides)
            .map(|o| {
                override_text(
                    &o.instance_type,
                    o.subnet_id.as_deref().or(o.availability_zone.as_deref()),
                    Some(o.weighted_capacity),
                    Some(o.priority),
                )
            })
            .collect(),
    );
    // AWS reports the launch template configs; an endpoint that reports launch
    // specifications instead is compared on those.
    let had = data.map(|d| {
        let from_configs = d
            .launch_template_configs()
            .iter()
            .flat_map(|c| c.overrides())
            .map(|o| {
                override_text(
                    o.instance_type().map_or("?", |t| t.as_str()),
                    o.subnet_id().or(o.availability_zone()),
                    o.weighted_capacity(),
                    o.priority(),
                )
            });
        let from_specs = d.launch_specifications().iter().map(|s| {
            override_text(
                s.instance_type().map_or("?", |t| t.as_str()),
                s.subnet_id()
                    .or(s.placement().and_then(|p| p.availability_zone())),
                s.weighted_capacity(),
                None,
            )
        });
        canonical(from_configs.chain(from_specs).collect())
    });
    let target = |total: i32, od: i32| format!("{total} vCPUs, {od} on-demand");
    let have_template = data
        .and_then(|d| d.launch_template_configs().first())
        .and_then(|c| c.launch_template_specification())
        .map(|s| {
            (
                s.launch_template_id(),
                s.launch_template_name(),
                s.version(),
            )
        });
    let mut facts = vec![
        Fact::new("instance types and weights", wanted, had, true),
        Fact::new(
            "target capacity",
            target(
                want.target_capacity as i32,
                want.on_demand_target_capacity as i32,
            ),
            data.map(|d| {
                target(
                    d.target_capacity().unwrap_or(0),
                    d.on_demand_target_capacity().unwrap_or(0),
                )
            }),
            true,
        ),
        Fact::new(
            "allocation strategy",
            want.allocation_strategy.clone(),
            data.and_then(|d| d.allocation_strategy())
                .map(|s| s.as_str().to_string()),
            false,
        ),
        Fact::new(
            "IAM fleet role",
            want.iam_fleet_role.clone(),
            data.and_then(|d| d.iam_fleet_role()).map(str::to_string),
            false,
        ),
        tags_fact(&want.tag_specifications[0].tags, &tags_of(have)),
    ];
    if have_template.is_some() {
        facts.insert(
            0,
            template_fact(
                &want.launch_template_configs[0].launch_template_specification,
                have_template,
            ),
        );
    }
    facts
}

async fn update(
    client: &Client,
    want: &SpotFleetConfig,
    have: &SpotFleetRequestConfig,
) -> Result<Applied, LaunchError> {
    let id = have.spot_fleet_request_id().unwrap_or_default().to_string();
    let diff = Diff::of(&facts(want, have));
    if diff.change.iter().any(|c| *c != "tags") {
        client
            .modify_spot_fleet_request()
            .spot_fleet_request_id(&id)
            .set_launch_template_configs(Some(configs(want)))
            .target_capacity(want.target_capacity as i32)
            .on_demand_target_capacity(want.on_demand_target_capacity as i32)
            .send()
            .await
            .map_err(|e| call_error("ec2:ModifySpotFleetRequest", e))?;
    }
    if diff.change.contains(&"tags") {
        super::retag_ec2(client, &id, &want.tag_specifications[0].tags).await?;
    }
    let notes = diff.notes(
        &format!("Spot Fleet request {id}"),
        true,
        &format!("cancel {id} with aws ec2 cancel-spot-fleet-requests and apply again"),
    );
    Ok(Applied { id, notes })
}
