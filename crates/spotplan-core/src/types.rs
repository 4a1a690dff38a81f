//! Domain values, parsed once at the edge and passed around as types rather than strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// CPU architecture, named as Kubernetes (`kubernetes.io/arch`) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names none of a closed set of values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownValue {
    #[error("unknown architecture '{0}': use amd64 or arm64")]
    Architecture(String),
    #[error("unknown mode '{0}': use one of latency, balanced, fault_tolerance")]
    Mode(String),
    #[error("'{0}' is not an allocation strategy: use one of {1}")]
    AllocationStrategy(String, String),
    #[error("'{0}' is not a fleet type: use maintain, request or instant")]
    FleetType(String),
}

impl FromStr for Arch {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(UnknownValue::Architecture(other.into())),
        }
    }
}

/// How a plan trades node count against node size (and, when no interruption ceiling is set,
/// how much it pays to avoid interruptions). See the README's "Objective" section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Few, large nodes: the least cross-node traffic.
    Latency,
    /// A moderate number of mid-sized nodes (spot-optimizer's default).
    #[default]
    Balanced,
    /// Many smaller nodes: one interruption takes out a small share of capacity.
    FaultTolerance,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Latency, Mode::Balanced, Mode::FaultTolerance];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Latency => "latency",
            Mode::Balanced => "balanced",
            Mode::FaultTolerance => "fault_tolerance",
        }
    }

    /// The node-count range a single instance type must land in for this mode, exactly as
    /// spot-optimizer 1.2.13 computes it (so plans stay comparable with it):
    /// `base = max(2, floor(max(vcpus/16, GiB/64)))`; for `base <= 4`: latency 1, balanced 2,
    /// fault_tolerance 3..=4; otherwise latency 1..=max(4, base/4), balanced the next..=base,
    /// fault_tolerance base+1..=2*base.
    pub fn node_range(self, vcpus: f64, memory_gib: f64) -> (u32, u32) {
        let base = ((vcpus / 16.0).max(memory_gib / 64.0)).floor().max(2.0) as u32;
        if base <= 4 {
            return match self {
                Mode::Latency => (1, 1),
                Mode::Balanced => (2, 2),
                Mode::FaultTolerance => (3, 4),
            };
        }
        let latency_max = (base / 4).max(4);
        match self {
            Mode::Latency => (1, latency_max),
            Mode::Balanced => (latency_max + 1, base),
            Mode::FaultTolerance => (base + 1, base * 2),
        }
    }

    /// The interruption ceiling every listed type is held to when the request sets none: a
    /// NodePool's list is a set, and Karpenter launches whichever listed type its allocation
    /// strategy picks, so the set's worst band is the plan's risk. latency <= 1 (under 10%),
    /// balanced <= 2 (under 15%), fault_tolerance <= 3 (under 20%). Types with no Spot Advisor
    /// band are left out under it.
    pub fn default_band_cap(self) -> u8 {
        match self {
            Mode::Latency => 1,
            Mode::Balanced => 2,
            Mode::FaultTolerance => 3,
        }
    }

    /// Cost multiplier per interruption band (0..=4; unknown counts as 4) used to rank when the
    /// request sets no interruption ceiling. 1.0 means "no premium".
    pub fn risk_multiplier(self, band: u8) -> f64 {
        const LATENCY: [f64; 5] = [1.00, 1.10, 1.25, 1.45, 1.70];
        const BALANCED: [f64; 5] = [1.00, 1.05, 1.12, 1.20, 1.35];
        const FAULT_TOLERANCE: [f64; 5] = [1.00, 1.02, 1.04, 1.06, 1.10];
        let i = usize::from(band.min(4));
        match self {
            Mode::Latency => LATENCY[i],
            Mode::Balanced => BALANCED[i],
            Mode::FaultTolerance => FAULT_TOLERANCE[i],
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latency" => Ok(Mode::Latency),
            "balanced" => Ok(Mode::Balanced),
            "fault_tolerance" | "fault-tolerance" => Ok(Mode::FaultTolerance),
            other => Err(UnknownValue::Mode(other.into())),
        }
    }
}

/// A Spot Advisor interruption band: the share of instances of a type interrupted over the
/// trailing month, in five buckets. `None` where the advisor has no entry ("unknown").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Band(u8);

impl Band {
    pub const MAX: u8 = 4;
    /// Labels of the five bands as the Spot Advisor publishes them.
    pub const LABELS: [&'static str; 5] = ["<5%", "5-10%", "10-15%", "15-20%", ">20%"];

    pub fn new(index: u8) -> Option<Band> {
        (index <= Self::MAX).then_some(Band(index))
    }
    pub fn index(self) -> u8 {
        self.0
    }
    pub fn label(self) -> &'static str {
        Self::LABELS[usize::from(self.0)]
    }
    /// The band an unknown type is ranked as.
    pub fn rank_of(band: Option<Band>) -> u8 {
        band.map_or(Self::MAX, Band::index)
    }
    pub fn label_of(band: Option<Band>) -> &'static str {
        band.map_or("unknown", Band::label)
    }
}

/// GiB to MiB, rounding up so a request is never shrunk.
pub fn gib_to_mib(gib: f64) -> u64 {
    (gib * 1024.0).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ranges_match_spot_optimizer() {
        // base = max(2, int(max(64/16, 256/64))) = 4 -> small workload ranges
        assert_eq!(Mode::Latency.node_range(64.0, 256.0), (1, 1));
        assert_eq!(Mode::Balanced.node_range(64.0, 256.0), (2, 2));
        assert_eq!(Mode::FaultTolerance.node_range(64.0, 256.0), (3, 4));
        // base = 32
        assert_eq!(Mode::Latency.node_range(512.0, 100.0), (1, 8));
        assert_eq!(Mode::Balanced.node_range(512.0, 100.0), (9, 32));
        assert_eq!(Mode::FaultTolerance.node_range(512.0, 100.0), (33, 64));
        // base = 5: latency_max = max(4, 1) = 4
        assert_eq!(Mode::Balanced.node_range(80.0, 1.0), (5, 5));
        assert_eq!(Mode::FaultTolerance.node_range(80.0, 1.0), (6, 10));
    }

    #[test]
    fn parse_and_label() {
        assert_eq!(
            "fault_tolerance".parse::<Mode>().unwrap(),
            Mode::FaultTolerance
        );
        assert!(
            "fast"
                .parse::<Mode>()
                .unwrap_err()
                .to_string()
                .contains("latency, balanced")
        );
        assert_eq!("x86_64".parse::<Arch>().unwrap(), Arch::Amd64);
        assert_eq!(Band::new(2).unwrap().label(), "10-15%");
        assert!(Band::new(5).is_none());
        assert_eq!(Band::label_of(None), "unknown");
        assert_eq!(Band::rank_of(None), 4);
    }

    #[test]
    fn risk_multipliers_grow_with_band() {
        for m in Mode::ALL {
            for b in 0..4 {
                assert!(m.risk_multiplier(b) < m.risk_multiplier(b + 1));
            }
        }
    }
}
