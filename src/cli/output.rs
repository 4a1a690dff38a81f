//! Rendering plans and data summaries for people (table) and programs (JSON, YAML).

use super::CliError;
use super::args::DataArgs;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;
use spotplan_core::market::{MarketData, PriceFrom, Provenance};
use spotplan_core::plan::{Candidate, CeilingSource, Plan, Ranking};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A number that prints as an integer when it is whole (spot-optimizer prints ints).
#[derive(Debug, Clone, Copy)]
struct Num(f64);

impl Serialize for Num {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 1e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

#[derive(Serialize)]
struct LegacyInstances<'a> {
    #[serde(rename = "type")]
    instance_type: &'a str,
    count: u32,
}

#[derive(Serialize)]
struct Reliability {
    /// Advisor savings %, as spot-optimizer reports it.
    spot_score: Option<i32>,
    /// Band index; an unknown band is reported as 4, the band it is ranked as.
    interruption_rate: u8,
}

#[derive(Serialize)]
struct DataStamp<'a> {
    catalog: &'a str,
    /// Every source the plan was made from, with its age and provenance.
    sources: &'a [Provenance],
}

/// spot-optimizer's keys first, then spotplan's (`mode` comes with the plan).
#[derive(Serialize)]
struct Output<'a> {
    instances: LegacyInstances<'a>,
    total_cores: u64,
    total_ram: Num,
    reliability: Reliability,
    #[serde(flatten)]
    plan: &'a Plan,
    /// What a spotplan NodePool's NodeOverlays make Karpenter see (risk pricing), in rank order.
    karpenter_prices: Vec<KarpenterPrice>,
    data: DataStamp<'a>,
}

/// One type's price as Karpenter sees it with risk pricing.
#[derive(Serialize)]
struct KarpenterPrice {
    #[serde(rename = "type")]
    instance_type: String,
    /// NodeOverlay `priceAdjustment`.
    price_adjustment: String,
    /// Spot $/h of one node, adjusted: what Karpenter orders by and CreateFleet's priority.
    adjusted_usd_per_hour: Option<f64>,
}

/// Risk pricing of the whole list, as the operator writes it (no learned premiums here).
fn karpenter_prices(plan: &Plan) -> Vec<KarpenterPrice> {
    use spotplan_core::policy::pricing;
    let listed: Vec<String> = plan
        .candidates
        .iter()
        .map(|c| c.instance_type.clone())
        .collect();
    let p = pricing::price(
        plan,
        &listed,
        &[],
        &[],
        &pricing::DEFAULT_LEARNED,
        jiff::Timestamp::now(),
    );
    p.types
        .iter()
        .map(|t| KarpenterPrice {
            instance_type: t.instance_type.clone(),
            price_adjustment: pricing::adjustment(t.premium),
            adjusted_usd_per_hour: t
                .unit_usd_per_hour
                .and_then(|u| pricing::apply_adjustment(u, &pricing::adjustment(t.premium)))
                .map(|v| (v * 1e6).round() / 1e6),
        })
        .collect()
}

pub fn print_plan(plan: &Plan, market: &MarketData, format: Format) {
    let p = plan.primary();
    let out = Output {
        instances: LegacyInstances {
            instance_type: &p.instance_type,
            count: p.count,
        },
        total_cores: p.total_vcpus,
        total_ram: Num(p.total_memory_gib),
        reliability: Reliability {
            spot_score: p.savings_pct,
            interruption_rate: p.interruption_band.unwrap_or(4),
        },
        plan,
        karpenter_prices: karpenter_prices(plan),
        data: DataStamp {
            catalog: &market.catalog().source,
            sources: market.sources(),
        },
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("plan serializes")
        ),
        Format::Yaml => print!(
            "{}",
            serde_saphyr::to_string(&out).expect("plan serializes")
        ),
        Format::Table => print_table(plan, market),
    }
}

/// A table in the CLI's style (borders only) with `header`.
pub fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header);
    t
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

fn row(c: &Candidate, k: Option<&KarpenterPrice>) -> Vec<Cell> {
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    vec![
        right(c.rank.to_string()),
        Cell::new(&c.instance_type),
        right(c.count.to_string()),
        right(format!("{}/{}", c.vcpus, c.memory_gib)),
        Cell::new(c.interruption_label),
        right(c.savings_pct.map_or("-".into(), |s| format!("{s}%"))),
        right(format!(
            "{}{}",
            usd(c.spot_usd_per_hour),
            if c.spot_price_source == PriceFrom::Estimated {
                "*"
            } else {
                ""
            }
        )),
        right(usd(c.total_spot_usd_per_hour)),
        right(match c.band_premium_pct {
            Some(p) => format!("{} +{p}%", usd(c.ranked_usd_per_hour)),
            None => usd(c.ranked_usd_per_hour),
        }),
        right(match k {
            Some(k) => format!("{} {}", usd(k.adjusted_usd_per_hour), k.price_adjustment),
            None => "-".into(),
        }),
        right(usd(c.total_on_demand_usd_per_hour)),
        right(format!("{:.1}%", c.waste_pct)),
    ]
}

fn print_table(plan: &Plan, market: &MarketData) {
    let p = plan.primary();
    println!(
        "{} vCPU / {} GiB in {}, mode {} ({}-{} nodes per type), every type {}, ranked by {}",
        plan.vcpus,
        plan.memory_gib,
        plan.region,
        plan.mode,
        plan.node_count_range.0,
        plan.node_count_range.1,
        ceiling_label(plan),
        ranking_label(plan.ranking),
    );
    let mut t = table(vec![
        "#",
        "type",
        "count",
        "vCPU/GiB",
        "interruption",
        "savings",
        "spot $/h",
        "total spot $/h",
        "ranked $/h",
        "Karpenter $/h",
        "total OD $/h",
        "waste",
    ]);
    let prices = karpenter_prices(plan);
    for c in &plan.candidates {
        let k = prices.iter().find(|k| k.instance_type == c.instance_type);
        t.add_row(row(c, k));
    }
    println!("{t}");
    println!("{}", why_this_order(plan));
    println!(
        "Karpenter $/h: one node's spot price with the NodeOverlay adjustment a SpotPlan's NodePool gets (risk pricing): Karpenter launches the lowest first"
    );
    println!(
        "primary: {} x {} = {} vCPU / {} GiB, spot {}/h vs on-demand {}/h{}",
        p.count,
        p.instance_type,
        p.total_vcpus,
        p.total_memory_gib,
        usd(plan.totals.spot_usd_per_hour),
        usd(plan.totals.on_demand_usd_per_hour),
        plan.totals
            .savings_pct
            .map_or(String::new(), |s| format!(" ({s:.1}% saved)")),
    );
    println!(
        "diversity: {} types, {} families, {} generations (want >= {}); {} of {} catalog types eligible",
        plan.diversity.types,
        plan.diversity.families,
        plan.diversity.generations,
        plan.diversity.min_types,
        plan.eligible_types,
        plan.catalog_types,
    );
    if plan.estimated_spot_prices > 0 {
        println!("* spot price estimated from on-demand price and advisor savings");
    }
    for n in &plan.notes {
        println!("note: {n}");
    }
    for p in market.sources() {
        println!(
            "{}: {} ({})",
            p.kind.as_str(),
            p.location,
            p.describe(Some(jiff::Timestamp::now()))
        );
    }
}

/// One line on why the list is in the order it is.
pub fn why_this_order(plan: &Plan) -> String {
    let first = "types whose node count is in the mode's own range first";
    match plan.ranking {
        Ranking::RiskAdjustedCost => {
            let premiums: Vec<String> = (0..=4u8)
                .map(|b| {
                    let m = plan.mode.risk_multiplier(b);
                    format!("+{:.0}%", (m - 1.0) * 100.0)
                })
                .collect();
            format!(
                "order: {first}, then by ranked $/h, the total spot $/h plus {}'s premium for the band ({} for bands 0..4, unknown as 4)",
                plan.mode,
                premiums.join(" ")
            )
        }
        Ranking::Cost => {
            format!("order: {first}, then by total spot $/h (your ceiling replaces the premium)")
        }
        Ranking::BandSavingsWaste => {
            format!("order: {first}, then by band, savings and waste (no prices for the region)")
        }
    }
}

fn ceiling_label(plan: &Plan) -> String {
    let c = plan.interruption_ceiling;
    let band = match c.band {
        Some(b) => format!("band <= {b}"),
        None => "of any band".into(),
    };
    match c.source {
        CeilingSource::User => format!("{band} (your ceiling)"),
        CeilingSource::Mode => format!("{band} ({}'s default)", plan.mode),
        CeilingSource::Relaxed => format!("{band} ({}'s default, relaxed: see notes)", plan.mode),
    }
}

fn ranking_label(ranking: Ranking) -> &'static str {
    {
        match ranking {
            Ranking::RiskAdjustedCost => "spot $/h with the mode's interruption premium",
            Ranking::Cost => "spot $/h within the interruption ceiling",
            Ranking::BandSavingsWaste => "band, savings, waste (no prices)",
        }
    }
}

/// Where a source's data came from and how old it is, or why there is none.
fn source_text(p: &Provenance) -> String {
    let now = Some(jiff::Timestamp::now());
    let cached = if p.from_cache { " [cached]" } else { "" };
    match &p.refresh_error {
        Some(e) if p.as_of == jiff::Timestamp::UNIX_EPOCH => {
            format!("{}: unavailable: {e}", p.location)
        }
        Some(e) => format!(
            "{}{cached} ({}); the last refresh failed: {e}",
            p.location,
            p.describe(now)
        ),
        None => format!("{}{cached} ({})", p.location, p.describe(now)),
    }
}

pub async fn data_show(args: &DataArgs, region: Option<&str>) -> Result<(), CliError> {
    let live: Vec<String> = region.map(String::from).into_iter().collect();
    let sources = args.sources();
    let loaded = args.load_with(&sources, None, &live).await?;
    let market = loaded.join();
    let catalog = market.catalog();
    println!(
        "catalog: {} (embedded): {} instance types, {} regions, {} EMR releases",
        catalog.source,
        catalog.len(),
        catalog.regions().len(),
        catalog.emr_releases().count()
    );
    for p in market.sources() {
        let what = p.kind.as_str();
        let size = match p.kind {
            spotplan_core::market::SourceKind::SpotAdvisor => market.advisor().map(|a| {
                format!(
                    "{} regions, {} Linux region/type entries, global rate {}",
                    a.regions.len(),
                    a.entry_count(),
                    a.global_rate.as_deref().unwrap_or("-")
                )
            }),
            spotplan_core::market::SourceKind::PriceFile => {
                market.inputs().prices.as_ref().map(|t| {
                    format!(
                        "{} regions, {} region/type prices",
                        t.regions.len(),
                        t.entry_count()
                    )
                })
            }
            _ => None,
        };
        println!(
            "{what}: {}{}",
            source_text(p),
            size.map(|s| format!(": {s}")).unwrap_or_default()
        );
    }
    if market.inputs().prices.is_none() && market.inputs().on_demand.is_empty() {
        println!("prices: none (give --prices, or --aws, for cost-aware ranking)");
    }
    if let Some(setup) = &sources.aws
        && let Ok(aws) = setup.get().await
    {
        let calls: Vec<String> = aws
            .calls
            .snapshot()
            .iter()
            .map(|(call, n)| format!("{call} {n}"))
            .collect();
        println!(
            "aws api calls (one per page): {}",
            if calls.is_empty() {
                "none (all served from the cache)".into()
            } else {
                calls.join(", ")
            }
        );
    }
    if let Some(r) = region {
        let id = catalog.region(r).ok_or_else(|| {
            CliError::usage(
                "--region",
                spotplan_core::optimizer::RequestError::UnknownRegion {
                    region: r.into(),
                    suggestion: spotplan_core::optimizer::closest(
                        r,
                        catalog.regions().iter().map(|x| &*x.name),
                    ),
                },
            )
        })?;
        let (mut spot, mut banded, mut priced) = (0, 0, 0);
        for (i, t) in catalog.types().iter().enumerate() {
            if !(t.spot && t.offered_in(id)) {
                continue;
            }
            spot += 1;
            let q = market.quote(id, i);
            banded += usize::from(q.band.is_some());
            priced += usize::from(q.spot.is_some());
        }
        println!(
            "{r}: {spot} spot-capable types offered; {banded} have an advisor band ({} unknown); {priced} have a spot price",
            spot - banded
        );
    }
    Ok(())
}
