//! Every bound on a request, defined once and used by the CLI, the CRD (CEL and schema) and the
//! optimizer alike.

/// Most vCPUs one request may ask for: far above any single NodePool's plan (a fault_tolerance
/// plan of this size spreads over 4,097-8,192 nodes), and low enough that every product of a
/// node count and a type's size fits comfortably in 64 bits.
pub const MAX_VCPUS: u32 = 65_536;
/// Most memory one request may ask for, GiB (256 TiB).
pub const MAX_MEMORY_GIB: u32 = 262_144;
/// The same in MiB.
pub const MAX_MEMORY_MIB: u64 = MAX_MEMORY_GIB as u64 * 1024;
/// The same as a Kubernetes quantity, for CEL.
pub const MAX_MEMORY_QUANTITY: &str = "256Ti";

/// Karpenter's spot-to-spot consolidation needs this many instance types: the default fewest
/// distinct types a plan wants.
pub const DEFAULT_MIN_TYPES: usize = 15;
/// The default length of a plan's list.
pub const DEFAULT_MAX_TYPES: usize = 20;
/// The most types a plan may list (and the most `minTypes` may ask for): Karpenter's
/// `minValues` goes up to 50.
pub const MAX_TYPES: usize = 50;
/// A NodePool requirement holds at most this many values in spotplan's lists (a widened list
/// may hold up to twice `maxTypes`).
pub const MAX_WRITTEN_TYPES: usize = 100;

/// Instance generations (the 6 in m6i) a request may name.
pub const MIN_GENERATION: u8 = 1;
pub const MAX_GENERATION: u8 = 20;

/// Most GPUs per instance a request may ask for.
pub const MAX_GPUS: u32 = 64;

/// Interruption bands: 0 (<5%) .. 4 (>20%).
pub const MAX_BAND: u8 = 4;
