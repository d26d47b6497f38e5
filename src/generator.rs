//! `eddy gen`: TSBS "cpu-only" shaped line protocol, deterministic for a seed.

use std::io::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const REGIONS: [&str; 9] = [
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
];
const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCH: [&str; 2] = ["x64", "x86"];
const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENVIRONMENT: [&str; 3] = ["production", "staging", "test"];
/// The ten fields of the `cpu` measurement.
pub const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// Number of hosts.
    pub scale: usize,
    /// First timestamp, ns.
    pub start_ns: i64,
    /// End (exclusive), ns.
    pub end_ns: i64,
    /// Step between readings of a host, ns.
    pub interval_ns: i64,
    /// Random seed.
    pub seed: u64,
}

impl GenSpec {
    /// Number of lines this spec produces.
    pub fn rows(&self) -> u64 {
        let steps =
            ((self.end_ns - self.start_ns).max(0) + self.interval_ns - 1) / self.interval_ns;
        steps as u64 * self.scale as u64
    }
}

/// Writes the data set, ordered by time then host, one line per host and interval.
pub fn generate(spec: &GenSpec, out: &mut impl Write) -> std::io::Result<u64> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let hosts: Vec<String> = (0..spec.scale)
        .map(|i| {
            let region = REGIONS[rng.random_range(0..REGIONS.len())];
            let dc = (b'a' + rng.random_range(0..3u8)) as char;
            format!(
                "cpu,hostname=host_{i},region={region},datacenter={region}{dc},rack={},os={},arch={},team={},service={},service_version={},service_environment={}",
                rng.random_range(0..100),
                OS[rng.random_range(0..OS.len())],
                ARCH[rng.random_range(0..ARCH.len())],
                TEAM[rng.random_range(0..TEAM.len())],
                rng.random_range(0..20),
                rng.random_range(0..2),
                ENVIRONMENT[rng.random_range(0..ENVIRONMENT.len())],
            )
        })
        .collect();
    let mut values: Vec<[i64; 10]> = (0..spec.scale)
        .map(|_| std::array::from_fn(|_| rng.random_range(0..=100)))
        .collect();
    let mut line = String::with_capacity(512);
    let mut rows = 0u64;
    let mut t = spec.start_ns;
    while t < spec.end_ns {
        for (h, prefix) in hosts.iter().enumerate() {
            line.clear();
            line.push_str(prefix);
            for (i, name) in FIELDS.iter().enumerate() {
                let v = &mut values[h][i];
                *v = (*v + rng.random_range(-5..=5)).clamp(0, 100);
                line.push(if i == 0 { ' ' } else { ',' });
                line.push_str(name);
                line.push('=');
                line.push_str(&v.to_string());
                line.push('i');
            }
            line.push(' ');
            line.push_str(&t.to_string());
            line.push('\n');
            out.write_all(line.as_bytes())?;
            rows += 1;
        }
        t += spec.interval_ns;
    }
    Ok(rows)
}
