//! EC2 Fleet: CreateFleet, found again by its tag through DescribeFleets, changed with
//! ModifyFleet (overrides and target capacity, on fleets of type maintain).

use super::{
    Applied, Diff, Fact, LaunchError, call_error, canonical, ec2_tags, override_text, tags_fact,
    template_fact,
};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetData, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest, FleetStateCode,
    FleetType, InstanceType, ResourceType, SpotAllocationStrategy, SpotOptionsRequest,
    TagSpecification, TargetCapacitySpecificationRequest,
};
use spotplan_core::render::fleet::{Ec2Fleet, NAME_TAG};

pub async fn apply(client: &Client, want: &Ec2Fleet, name: &str) -> Result<Applied, LaunchError> {
    let found = find(client, name).await?;
    match found.as_slice() {
        [] => create(client, want).await,
        [have] => update(client, want, have).await,
        many => Err(several(name, many)),
    }
}

fn several(name: &str, many: &[FleetData]) -> LaunchError {
    LaunchError::Ambiguous {
        action: "ec2:DescribeFleets",
        kinds: "EC2 Fleets",
        tag: NAME_TAG,
        name: name.into(),
        ids: many
            .iter()
            .filter_map(FleetData::fleet_id)
            .map(String::from)
            .collect(),
        fix: "delete all but one, or pick another --name",
    }
}

/// Live fleets tagged with this name (deleted and failed ones do not count).
async fn find(client: &Client, name: &str) -> Result<Vec<FleetData>, LaunchError> {
    let mut pages = client.describe_fleets().into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| call_error("ec2:DescribeFleets", e))?;
        out.extend(
            page.fleets()
                .iter()
                .filter(|f| {
                    let live = !matches!(
                        f.fleet_state(),
                        Some(
                            FleetStateCode::Deleted
                                | FleetStateCode::DeletedRunning
                                | FleetStateCode::DeletedTerminatingInstances
                                | FleetStateCode::Failed
                        )
                    );
                    live && f
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some(NAME_TAG) && t.value() == Some(name))
                })
                .cloned(),
        );
    }
    Ok(out)
}

fn configs(want: &Ec2Fleet) -> Vec<FleetLaunchTemplateConfigRequest> {
    want.launch_template_configs
        .iter()
        .map(|c| {
            let lt = &c.launch_template_specification;
            FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .set_launch_template_id(lt.id.clone())
                        .set_launch_template_name(lt.name.clone())
                        .version(&lt.version)
                        .build(),
                )
                .set_overrides(Some(
                    c.overrides
                        .iter()
                        .map(|o| {
                            FleetLaunchTemplateOverridesRequest::builder()
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

fn capacity(want: &Ec2Fleet) -> TargetCapacitySpecificationRequest {
    let t = &want.target_capacity_specification;
    TargetCapacitySpecificationRequest::builder()
        .total_target_capacity(t.total_target_capacity as i32)
        .on_demand_target_capacity(t.on_demand_target_capacity as i32)
        .default_target_capacity_type(DefaultTargetCapacityType::from(
            t.default_target_capacity_type.as_str(),
        ))
        .build()
}

async fn create(client: &Client, want: &Ec2Fleet) -> Result<Applied, LaunchError> {
    let tags = want.tag_specifications.iter().map(|s| {
        TagSpecification::builder()
            .resource_type(ResourceType::from(s.resource_type.as_str()))
            .set_tags(Some(ec2_tags(&s.tags)))
            .build()
    });
    let out = client
        .create_fleet()
        .set_launch_template_configs(Some(configs(want)))
        .target_capacity_specification(capacity(want))
        .spot_options(
            SpotOptionsRequest::builder()
                .allocation_strategy(SpotAllocationStrategy::from(
                    want.spot_options.allocation_strategy.as_str(),
                ))
                .build(),
        )
        .r#type(FleetType::from(want.fleet_type.as_str()))
        .set_tag_specifications(Some(tags.collect()))
        .send()
        .await
        .map_err(|e| call_error("ec2:CreateFleet", e))?;
    let id = out
        .fleet_id()
        .ok_or(LaunchError::NoId {
            action: "ec2:CreateFleet",
            field: "FleetId",
        })?
        .to_string();
    let overrides: usize = want
        .launch_template_configs
        .iter()
        .map(|c| c.overrides.len())
        .sum();
    Ok(Applied {
        notes: vec![format!(
            "created EC2 Fleet {id}: {overrides} overrides, target {} vCPUs",
            want.target_capacity_specification.total_target_capacity
        )],
        id,
    })
}

fn facts(want: &Ec2Fleet, have: &FleetData) -> Vec<Fact> {
    let wanted_overrides = canonical(
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
    let had_overrides = canonical(
        have.launch_template_configs()
            .iter()
            .flat_map(|c| c.overrides())
            .map(|o| {
                override_text(
                    o.instance_type().map_or("?", |t| t.as_str()),
                    o.subnet_id().or(o.availability_zone()),
                    o.weighted_capacity(),
                    o.priority(),
                )
            })
            .collect(),
    );
    let t = &want.target_capacity_specification;
    let target = |total: i32, od: i32| format!("{total} vCPUs, {od} on-demand");
    let have_template = have
        .launch_template_configs()
        .first()
        .and_then(|c| c.launch_template_specification())
        .map(|s| {
            (
                s.launch_template_id(),
                s.launch_template_name(),
                s.version(),
            )
        });
    vec![
        template_fact(
            &want.launch_template_configs[0].launch_template_specification,
            have_template,
        ),
        Fact::new(
            "instance types and weights",
            wanted_overrides,
            Some(had_overrides),
            true,
        ),
        Fact::new(
            "target capacity",
            target(
                t.total_target_capacity as i32,
                t.on_demand_target_capacity as i32,
            ),
            have.target_capacity_specification().map(|c| {
                target(
                    c.total_target_capacity().unwrap_or(0),
                    c.on_demand_target_capacity().unwrap_or(0),
                )
            }),
            true,
        ),
        Fact::new(
            "allocation strategy",
            want.spot_options.allocation_strategy.clone(),
            have.spot_options()
                .and_then(|s| s.allocation_strategy())
                .map(|s| s.as_str().to_string()),
            false,
        ),
        Fact::new(
            "fleet type",
            want.fleet_type.clone(),
            have.r#type().map(|t| t.as_str().to_string()),
            false,
        ),
        tags_fact(
            &want.tag_specifications[0].tags,
            &have
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value()?)))
                .collect::<Vec<_>>(),
        ),
    ]
}

async fn update(
    client: &Client,
    want: &Ec2Fleet,
    have: &FleetData,
) -> Result<Applied, LaunchError> {
    let id = have.fleet_id().unwrap_or_default().to_string();
    let mut facts = facts(want, have);
    // Only a fleet of type maintain can be modified (tags aside).
    let maintain = have.r#type() == Some(&FleetType::Maintain);
    if !maintain {
        facts
            .iter_mut()
            .filter(|f| f.what != "tags")
            .for_each(|f| f.changeable = false);
    }
    let diff = Diff::of(&facts);
    if diff.change.iter().any(|c| *c != "tags") {
        client
            .modify_fleet()
            .fleet_id(&id)
            .set_launch_template_configs(Some(configs(want)))
            .target_capacity_specification(capacity(want))
            .send()
            .await
            .map_err(|e| call_error("ec2:ModifyFleet", e))?;
    }
    if diff.change.contains(&"tags") {
        super::retag_ec2(client, &id, &want.tag_specifications[0].tags).await?;
    }
    let notes = diff.notes(
        &format!("EC2 Fleet {id}"),
        true,
        &format!("delete {id} with aws ec2 delete-fleets and apply again"),
    );
    Ok(Applied { id, notes })
}
