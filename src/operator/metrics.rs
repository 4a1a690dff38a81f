//! Prometheus metrics of the controller. Labels are fixed categories or plan names, never free
//! text.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: Histogram,
    pub nodepool_writes: IntCounterVec,
    pub plan_spot_usd: GaugeVec,
    pub plan_on_demand_usd: GaugeVec,
    pub plan_savings: GaugeVec,
    pub plan_types: GaugeVec,
    pub plan_ready: GaugeVec,
    pub data_age: GaugeVec,
    pub data_fresh: IntGauge,
    pub source_fresh: IntGaugeVec,
    pub aws_calls: IntCounterVec,
    pub data_refresh_failures: IntCounterVec,
    pub data_refreshes: IntCounterVec,
    pub leader: IntGauge,
    pub interruptions: IntCounterVec,
    pub launch_failures: IntCounterVec,
    pub rebalances: IntCounterVec,
    pub plan_shifted: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("spotplan".into()), None).expect("valid prefix");
        let plan = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["plan"]).expect("valid metric")
        };
        let m = Metrics {
            reconciles: IntCounterVec::new(
                Opts::new(
                    "reconciles_total",
                    "Reconciles run, by outcome: Applied (wrote), Unchanged, NotReady, Deferred (not leader, caches or first data not ready), Failed",
                ),
                &["outcome"],
            )
            .unwrap(),
            failures: IntCounterVec::new(
                Opts::new(
                    "reconcile_failures_total",
                    "Failed reconciles by error category",
                ),
                &["category"],
            )
            .unwrap(),
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "reconcile_duration_seconds",
                    "Time to reconcile one SpotPlan",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )
            .unwrap(),
            nodepool_writes: IntCounterVec::new(
                Opts::new(
                    "nodepool_writes_total",
                    "NodePool server-side applies, by role",
                ),
                &["role"],
            )
            .unwrap(),
            plan_spot_usd: plan(
                "plan_spot_usd_per_hour",
                "Estimated spot $/h of a plan's whole request on its primary type",
            ),
            plan_on_demand_usd: plan(
                "plan_on_demand_usd_per_hour",
                "On-demand $/h of the same capacity",
            ),
            plan_savings: plan("plan_savings_ratio", "Spot savings over on-demand, 0..1"),
            plan_types: plan(
                "plan_instance_types",
                "Instance types written to the plan's NodePools",
            ),
            plan_ready: plan("plan_ready", "1 when the plan's Ready condition is True"),
            data_age: GaugeVec::new(
                Opts::new(
                    "market_data_age_seconds",
                    "Age of the market data in use, by source (and region for AWS sources)",
                ),
                &["source", "region"],
            )
            .unwrap(),
            source_fresh: IntGaugeVec::new(
                Opts::new(
                    "market_data_source_fresh",
                    "1 when a source's data is fresh and available",
                ),
                &["source", "region"],
            )
            .unwrap(),
            aws_calls: IntCounterVec::new(
                Opts::new(
                    "aws_api_calls_total",
                    "AWS API calls made (one per page), by call",
                ),
                &["call"],
            )
            .unwrap(),
            data_fresh: IntGauge::new("market_data_fresh", "1 when market data is fresh").unwrap(),
            data_refresh_failures: IntCounterVec::new(
                Opts::new(
                    "market_data_refresh_failures_total",
                    "Sources whose refresh failed (their last good data stays), by source and reason",
                ),
                &["source", "reason"],
            )
            .unwrap(),
            data_refreshes: IntCounterVec::new(
                Opts::new(
                    "market_data_refreshes_total",
                    "Market data refreshes, by outcome (Changed, Unchanged, Failed)",
                ),
                &["outcome"],
            )
            .unwrap(),
            leader: IntGauge::new("leader", "1 on the replica holding the leader Lease").unwrap(),
            interruptions: IntCounterVec::new(
                Opts::new(
                    "interruptions_total",
                    "Spot interruptions of a plan's NodeClaims (one per NodeClaim), by type and zone",
                ),
                &["plan", "instance_type", "zone"],
            )
            .unwrap(),
            launch_failures: IntCounterVec::new(
                Opts::new(
                    "launch_failures_total",
                    "Launches of a plan's NodeClaims that failed for want of capacity (InsufficientCapacityError; one per NodeClaim), by type and zone",
                ),
                &["plan", "instance_type", "zone"],
            )
            .unwrap(),
            rebalances: IntCounterVec::new(
                Opts::new(
                    "rebalances_total",
                    "Spot rebalance recommendations for a plan's NodeClaims (SpotRebalanceRecommendation; one per NodeClaim), by type and zone",
                ),
                &["plan", "instance_type", "zone"],
            )
            .unwrap(),
            plan_shifted: plan(
                "plan_shifted",
                "1 while a plan's new capacity is shifted to on-demand (onDemandShift)",
            ),
            registry,
        };
        for c in [
            Box::new(m.reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.failures.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.nodepool_writes.clone()),
            Box::new(m.plan_spot_usd.clone()),
            Box::new(m.plan_on_demand_usd.clone()),
            Box::new(m.plan_savings.clone()),
            Box::new(m.plan_types.clone()),
            Box::new(m.plan_ready.clone()),
            Box::new(m.data_age.clone()),
            Box::new(m.data_fresh.clone()),
            Box::new(m.source_fresh.clone()),
            Box::new(m.aws_calls.clone()),
            Box::new(m.data_refresh_failures.clone()),
            Box::new(m.data_refreshes.clone()),
            Box::new(m.leader.clone()),
            Box::new(m.interruptions.clone()),
            Box::new(m.launch_failures.clone()),
            Box::new(m.rebalances.clone()),
            Box::new(m.plan_shifted.clone()),
        ] {
            m.registry.register(c).expect("metrics register once");
        }
        // Every outcome and data source has a series from the start (0 until it happens).
        for o in super::error::Outcome::ALL {
            m.reconciles.with_label_values(&[o.as_str()]);
        }
        m
    }

    /// Forgets a deleted plan's series.
    pub fn forget_plan(&self, plan: &str) {
        for g in [
            &self.plan_spot_usd,
            &self.plan_on_demand_usd,
            &self.plan_savings,
            &self.plan_types,
            &self.plan_ready,
            &self.plan_shifted,
        ] {
            let _ = g.remove_label_values(&[plan]);
        }
    }

    /// Plan names that have series.
    pub fn plans(&self) -> Vec<String> {
        use prometheus::core::Collector;
        self.plan_ready
            .collect()
            .iter()
            .flat_map(|f| {
                f.get_metric()
                    .iter()
                    .map(|m| m.get_label()[0].value().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
