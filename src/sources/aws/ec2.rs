//! EC2 calls: spot prices, instance type offerings, instance types, availability zones and
//! spot placement scores. Each returns plain data; errors keep AWS's code.

use super::{AwsError, Counter};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, InstanceTypeInfo, LocationType, TargetCapacityUnitType, UsageClassType,
};
use spotplan_core::catalog::{
    Accelerator, AcceleratorKind, CpuArch, DiskKind, RegionOfferings, Storage, TypeSpec,
};
use spotplan_core::market::ZonePrices;
use std::collections::BTreeMap;

/// Spot $/h per type and zone: the latest Linux/UNIX record of each, with `StartTime` now
/// (EC2 then returns the price in effect now, however old its record).
pub async fn spot_prices(client: &Client, calls: &Counter) -> Result<ZonePrices, AwsError> {
    let now = aws_smithy_types::DateTime::from_secs(jiff::Timestamp::now().as_second());
    let mut pages = client
        .describe_spot_price_history()
        .product_descriptions("Linux/UNIX")
        .start_time(now)
        .max_results(1000)
        .into_paginator()
        .send();
    let mut latest: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
    while let Some(page) = pages.next().await {
        calls.page("DescribeSpotPriceHistory");
        let page = page.map_err(|e| AwsError::from_sdk("ec2:DescribeSpotPriceHistory", e))?;
        for p in page.spot_price_history() {
            let (Some(ty), Some(zone), Some(price)) =
                (p.instance_type(), p.availability_zone(), p.spot_price())
            else {
                continue;
            };
            let Ok(price) = price.parse::<f64>() else {
                return Err(AwsError::bad_data(
                    "ec2:DescribeSpotPriceHistory",
                    format!("{ty:?} in {zone}: '{price}' is not a price"),
                ));
            };
            if !price.is_finite() || price < 0.0 {
                return Err(AwsError::bad_data(
                    "ec2:DescribeSpotPriceHistory",
                    format!("{} in {zone}: {price} is not a price", ty.as_str()),
                ));
            }
            let at = p.timestamp().map_or(0, |t| t.secs());
            let key = (ty.as_str().to_string(), zone.to_string());
            if latest.get(&key).is_none_or(|(t, _)| at >= *t) {
                latest.insert(key, (at, price));
            }
        }
    }
    let mut out = ZonePrices::default();
    for ((ty, zone), (_, price)) in latest {
        out.entry(ty).or_default().push((zone, price));
    }
    Ok(out)
}

/// The zones of every type offered in the region (by availability zone, for this account).
pub async fn offerings(client: &Client, calls: &Counter) -> Result<RegionOfferings, AwsError> {
    let mut pages = client
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .max_results(1000)
        .into_paginator()
        .send();
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(page) = pages.next().await {
        calls.page("DescribeInstanceTypeOfferings");
        let page = page.map_err(|e| AwsError::from_sdk("ec2:DescribeInstanceTypeOfferings", e))?;
        for o in page.instance_type_offerings() {
            if let (Some(ty), Some(zone)) = (o.instance_type(), o.location()) {
                by_type
                    .entry(ty.as_str().to_string())
                    .or_default()
                    .push(zone.to_string());
            }
        }
    }
    Ok(by_type
        .into_iter()
        .map(|(t, mut z)| {
            z.sort();
            z.dedup();
            (t, z)
        })
        .collect())
}

/// Every instance type the region describes.
pub async fn instance_types(client: &Client, calls: &Counter) -> Result<Vec<TypeSpec>, AwsError> {
    let mut pages = client
        .describe_instance_types()
        .max_results(100)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        calls.page("DescribeInstanceTypes");
        let page = page.map_err(|e| AwsError::from_sdk("ec2:DescribeInstanceTypes", e))?;
        out.extend(page.instance_types().iter().filter_map(type_spec));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

fn type_spec(i: &InstanceTypeInfo) -> Option<TypeSpec> {
    let name = i.instance_type()?.as_str().to_string();
    let vcpu = i.v_cpu_info()?;
    let archs: Vec<&str> = i
        .processor_info()
        .map(|p| {
            p.supported_architectures()
                .iter()
                .map(|a| a.as_str())
                .collect()
        })
        .unwrap_or_default();
    let cpu_arch = if archs.contains(&"x86_64") {
        CpuArch::X86_64
    } else if archs.contains(&"arm64") {
        CpuArch::Arm64
    } else if archs.contains(&"arm64_mac") {
        CpuArch::Arm64Mac
    } else if archs.contains(&"x86_64_mac") {
        CpuArch::X86_64Mac
    } else {
        return None;
    };
    let storage = i.instance_storage_info().and_then(|s| {
        let disks = s.disks();
        let kind = match disks.first()?.r#type()?.as_str() {
            "ssd" => DiskKind::Ssd,
            _ => DiskKind::Hdd,
        };
        Some(Storage {
            kind,
            nvme: s
                .nvme_support()
                .is_some_and(|n| matches!(n.as_str(), "required" | "supported")),
            total_gb: u32::try_from(s.total_size_in_gb().unwrap_or(0)).unwrap_or(u32::MAX),
            disks: disks
                .iter()
                .map(|d| d.count().unwrap_or(0).max(0) as u32)
                .sum(),
        })
    });
    let mut accelerators = Vec::new();
    for g in i.gpu_info().map(|g| g.gpus()).unwrap_or_default() {
        accelerators.push(Accelerator {
            kind: AcceleratorKind::Gpu,
            count: g.count().unwrap_or(0).max(0) as u32,
            manufacturer: g.manufacturer().unwrap_or("").to_string().into(),
            name: g.name().unwrap_or("").to_string().into(),
            memory_mib: g
                .memory_info()
                .and_then(|m| m.size_in_mib())
                .unwrap_or(0)
                .max(0) as u64,
        });
    }
    let others = [
        (
            AcceleratorKind::Neuron,
            i.neuron_info().map_or(0, |n| n.neuron_devices().len()),
        ),
        (
            AcceleratorKind::Inference,
            i.inference_accelerator_info()
                .map_or(0, |n| n.accelerators().len()),
        ),
        (
            AcceleratorKind::Fpga,
            i.fpga_info().map_or(0, |n| n.fpgas().len()),
        ),
        (
            AcceleratorKind::Media,
            i.media_accelerator_info()
                .map_or(0, |n| n.accelerators().len()),
        ),
    ];
    for (kind, n) in others {
        if n > 0 {
            accelerators.push(Accelerator {
                kind,
                count: n as u32,
                manufacturer: "AWS".into(),
                name: String::new().into(),
                memory_mib: 0,
            });
        }
    }
    Some(TypeSpec {
        name,
        vcpus: vcpu.default_v_cpus().unwrap_or(0).max(0) as u32,
        cores: vcpu
            .default_cores()
            .or(vcpu.default_v_cpus())
            .unwrap_or(0)
            .max(0) as u32,
        memory_mib: i
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .unwrap_or(0)
            .max(0) as u64,
        cpu_arch,
        processor: i
            .processor_info()
            .and_then(|p| p.manufacturer())
            .unwrap_or("")
            .to_string(),
        current_generation: i.current_generation().unwrap_or(false),
        bare_metal: i.bare_metal().unwrap_or(false),
        burstable: i.burstable_performance_supported().unwrap_or(false),
        spot: i.supported_usage_classes().contains(&UsageClassType::Spot),
        storage,
        accelerators,
    })
}

/// Zone ID -> zone name in the region, for this account (placement scores answer in IDs).
pub async fn zone_names(
    client: &Client,
    calls: &Counter,
) -> Result<BTreeMap<String, String>, AwsError> {
    calls.page("DescribeAvailabilityZones");
    let out = client
        .describe_availability_zones()
        .filters(
            Filter::builder()
                .name("zone-type")
                .values("availability-zone")
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ec2:DescribeAvailabilityZones", e))?;
    Ok(out
        .availability_zones()
        .iter()
        .filter_map(|z| Some((z.zone_id()?.to_string(), z.zone_name()?.to_string())))
        .collect())
}

/// Spot placement scores per availability zone ID (1-10) for a set of types and a target
/// capacity in vCPUs.
pub async fn placement_scores(
    client: &Client,
    calls: &Counter,
    region: &str,
    types: &[String],
    vcpus: u32,
) -> Result<Vec<(String, u8)>, AwsError> {
    calls.page("GetSpotPlacementScores");
    let out = client
        .get_spot_placement_scores()
        .set_instance_types(Some(types.to_vec()))
        .target_capacity(i32::try_from(vcpus).unwrap_or(i32::MAX))
        .target_capacity_unit_type(TargetCapacityUnitType::Vcpu)
        .single_availability_zone(true)
        .region_names(region)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("ec2:GetSpotPlacementScores", e))?;
    Ok(out
        .spot_placement_scores()
        .iter()
        .filter(|s| s.region().is_none_or(|r| r == region))
        .filter_map(|s| {
            let score = u8::try_from(s.score()?).ok()?.min(10);
            Some((s.availability_zone_id()?.to_string(), score))
        })
        .collect())
}
