//! Auto Scaling group: CreateAutoScalingGroup, found again by its name (and spotplan's tag,
//! so a group spotplan did not make is never changed), changed with UpdateAutoScalingGroup.
//! The desired capacity of an existing group belongs to its scaling and is left alone.

use super::{
    Applied, Diff, Fact, LaunchError, call_error, canonical, override_text, tags_fact,
    template_fact,
};
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{
    AutoScalingGroup as Group, InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides,
    LaunchTemplateSpecification, MixedInstancesPolicy, Tag,
};
use spotplan_core::render::fleet::{AutoScalingGroup, NAME_TAG};

pub async fn apply(client: &Client, want: &AutoScalingGroup) -> Result<Applied, LaunchError> {
    let name = &want.auto_scaling_group_name;
    let found = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| call_error("autoscaling:DescribeAutoScalingGroups", e))?;
    match found.auto_scaling_groups().first() {
        None => create(client, want).await,
        Some(have) => {
            let ours = have
                .tags()
                .iter()
                .any(|t| t.key() == Some(NAME_TAG) && t.value() == Some(name.as_str()));
            if !ours {
                return Err(LaunchError::NotOurs {
                    name: name.clone(),
                    tag: NAME_TAG,
                });
            }
            update(client, want, have).await
        }
    }
}

fn policy(want: &AutoScalingGroup) -> MixedInstancesPolicy {
    let p = &want.mixed_instances_policy;
    let lt = &p.launch_template.launch_template_specification;
    let d = &p.instances_distribution;
    MixedInstancesPolicy::builder()
        .launch_template(
            LaunchTemplate::builder()
                .launch_template_specification(
                    LaunchTemplateSpecification::builder()
                        .set_launch_template_id(lt.id.clone())
                        .set_launch_template_name(lt.name.clone())
                        .version(&lt.version)
                        .build(),
                )
                .set_overrides(Some(
                    p.launch_template
                        .overrides
                        .iter()
                        .map(|o| {
                            LaunchTemplateOverrides::builder()
                                .instance_type(&o.instance_type)
                                .weighted_capacity(&o.weighted_capacity)
                                .build()
                        })
                        .collect(),
                ))
                .build(),
        )
        .instances_distribution(
            InstancesDistribution::builder()
                .on_demand_base_capacity(d.on_demand_base_capacity as i32)
                .on_demand_percentage_above_base_capacity(i32::from(
                    d.on_demand_percentage_above_base_capacity,
                ))
                .spot_allocation_strategy(&d.spot_allocation_strategy)
                .build(),
        )
        .build()
}

fn tags(want: &AutoScalingGroup) -> Vec<Tag> {
    want.tags
        .iter()
        .map(|t| {
            Tag::builder()
                .resource_id(&want.auto_scaling_group_name)
                .resource_type("auto-scaling-group")
                .key(&t.key)
                .value(&t.value)
                .propagate_at_launch(t.propagate_at_launch)
                .build()
        })
        .collect()
}

async fn create(client: &Client, want: &AutoScalingGroup) -> Result<Applied, LaunchError> {
    client
        .create_auto_scaling_group()
        .auto_scaling_group_name(&want.auto_scaling_group_name)
        .mixed_instances_policy(policy(want))
        .min_size(want.min_size as i32)
        .max_size(want.max_size as i32)
        .desired_capacity(want.desired_capacity as i32)
        .capacity_rebalance(want.capacity_rebalance)
        .set_vpc_zone_identifier(want.vpc_zone_identifier.clone())
        .set_availability_zones(
            (!want.availability_zones.is_empty()).then(|| want.availability_zones.clone()),
        )
        .set_tags(Some(tags(want)))
        .send()
        .await
        .map_err(|e| call_error("autoscaling:CreateAutoScalingGroup", e))?;
    let name = want.auto_scaling_group_name.clone();
    Ok(Applied {
        notes: vec![format!(
            "created Auto Scaling group {name}: {} types, desired {} vCPUs",
            want.mixed_instances_policy.launch_template.overrides.len(),
            want.desired_capacity
        )],
        id: name,
    })
}

fn facts(want: &AutoScalingGroup, have: &Group) -> Vec<Fact> {
    let p = &want.mixed_instances_policy;
    let d = &p.instances_distribution;
    let have_policy = have.mixed_instances_policy();
    let have_lt = have_policy.and_then(|m| m.launch_template());
    let overrides = canonical(
        p.launch_template
            .overrides
            .iter()
            .map(|o| {
                override_text(
                    &o.instance_type,
                    None,
                    o.weighted_capacity.parse().ok(),
                    None,
                )
            })
            .collect(),
    );
    let had_overrides = have_lt.map(|lt| {
        canonical(
            lt.overrides()
                .iter()
                .map(|o| {
                    override_text(
                        o.instance_type().unwrap_or("?"),
                        None,
                        o.weighted_capacity().and_then(|w| w.parse().ok()),
                        None,
                    )
                })
                .collect(),
        )
    });
    let distribution = |base: i32, pct: i32, strategy: &str| {
        format!("base {base}, {pct}% on-demand above it, {strategy}")
    };
    let subnets = |s: &str| canonical(s.split(',').map(|x| x.trim().to_string()).collect());
    let zones = |z: &[String]| canonical(z.to_vec());
    vec![
        template_fact(
            &p.launch_template.launch_template_specification,
            have_lt
                .and_then(|lt| lt.launch_template_specification())
                .map(|s| {
                    (
                        s.launch_template_id(),
                        s.launch_template_name(),
                        s.version(),
                    )
                }),
        ),
        Fact::new("instance types and weights", overrides, had_overrides, true),
        Fact::new(
            "instances distribution",
            distribution(
                d.on_demand_base_capacity as i32,
                i32::from(d.on_demand_percentage_above_base_capacity),
                &d.spot_allocation_strategy,
            ),
            have_policy
                .and_then(|m| m.instances_distribution())
                .map(|h| {
                    distribution(
                        h.on_demand_base_capacity().unwrap_or(0),
                        h.on_demand_percentage_above_base_capacity().unwrap_or(100),
                        h.spot_allocation_strategy().unwrap_or("lowest-price"),
                    )
                }),
            true,
        ),
        Fact::new(
            "size",
            format!("min {}, max {}", want.min_size, want.max_size),
            Some(format!(
                "min {}, max {}",
                have.min_size().unwrap_or(0),
                have.max_size().unwrap_or(0)
            )),
            true,
        ),
        Fact::new(
            "subnets",
            subnets(want.vpc_zone_identifier.as_deref().unwrap_or("")),
            Some(subnets(have.vpc_zone_identifier().unwrap_or(""))),
            true,
        ),
        // Zones follow the subnets when subnets are given.
        Fact::new(
            "zones",
            zones(&want.availability_zones),
            (!want.availability_zones.is_empty()).then(|| zones(have.availability_zones())),
            true,
        ),
        Fact::new(
            "capacity rebalance",
            want.capacity_rebalance.to_string(),
            have.capacity_rebalance().map(|b| b.to_string()),
            true,
        ),
        tags_fact(
            &want
                .tags
                .iter()
                .map(|t| spotplan_core::render::fleet::Tag {
                    key: t.key.clone(),
                    value: t.value.clone(),
                })
                .collect::<Vec<_>>(),
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
    want: &AutoScalingGroup,
    have: &Group,
) -> Result<Applied, LaunchError> {
    let name = want.auto_scaling_group_name.clone();
    let diff = Diff::of(&facts(want, have));
    if diff.change.iter().any(|c| *c != "tags") {
        client
            .update_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .mixed_instances_policy(policy(want))
            .min_size(want.min_size as i32)
            .max_size(want.max_size as i32)
            .capacity_rebalance(want.capacity_rebalance)
            .set_vpc_zone_identifier(want.vpc_zone_identifier.clone())
            .set_availability_zones(
                (!want.availability_zones.is_empty()).then(|| want.availability_zones.clone()),
            )
            .send()
            .await
            .map_err(|e| call_error("autoscaling:UpdateAutoScalingGroup", e))?;
    }
    if diff.change.contains(&"tags") {
        client
            .create_or_update_tags()
            .set_tags(Some(tags(want)))
            .send()
            .await
            .map_err(|e| call_error("autoscaling:CreateOrUpdateTags", e))?;
    }
    let mut notes = diff.notes(&format!("Auto Scaling group {name}"), true, "");
    if !diff.change.is_empty()
        && let Some(desired) = have.desired_capacity()
    {
        notes.push(format!(
            "note: desired capacity left at {desired} (the group's scaling owns it; AWS keeps it within min and max)"
        ));
    }
    Ok(Applied { id: name, notes })
}
