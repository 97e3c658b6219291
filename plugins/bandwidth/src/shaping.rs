//! Rate limits with token bucket filters, as the reference's bandwidth plugin sets them:
//! traffic to the container is shaped on the host veth's egress; traffic from it is
//! redirected from the host veth's ingress to an ifb device and shaped there.
//!
//! netlink-packet-route has no TBF qdisc, so the qdiscs and the redirect filter are written
//! with one `tc -batch` process for the whole set (one `tc` per command where a name
//! cannot be written as batch text).

use kernel::tool::{self, ToolError};

/// The reference's fixed queueing latency: the queue holds the burst plus this long at the
/// rate.
const LATENCY_MS: u64 = 25;

/// The kernel's packet scheduler clock: 64 ns a tick (`PSCHED_SHIFT`, what
/// `/proc/net/psched` reports), in which TBF's classic parameters give the bucket.
const NS_PER_TICK: u64 = 64;

/// Why TBF cannot hold a rate and burst: each is a limit the reference's bandwidth plugin
/// refuses too (by its own check, or by the kernel's EINVAL on the qdisc it sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unholdable {
    #[error("is under 8 bit/s: TBF counts whole bytes a second")]
    RateUnderAByte,
    #[error("is under 8 bits: TBF counts whole bytes")]
    BurstUnderAByte,
    #[error("is 4 GiB or more: TBF counts the burst in 32 bits")]
    BurstOver4GiB,
    #[error("is so fast that the burst lasts under a microsecond, the least TBF's bucket holds")]
    BurstUnderAMicrosecond,
    #[error("is too small for the rate: TBF's bucket, as whole 64 ns ticks, holds no byte")]
    EmptyBucket,
}

impl Unholdable {
    /// Which of the pair is at fault: `"Rate"` or `"Burst"`.
    pub fn field(self) -> &'static str {
        match self {
            Unholdable::RateUnderAByte | Unholdable::BurstUnderAMicrosecond => "Rate",
            Unholdable::BurstUnderAByte | Unholdable::BurstOver4GiB | Unholdable::EmptyBucket => {
                "Burst"
            }
        }
    }
}

/// A rate in bits per second and a burst in bits, as the config gives them, that TBF can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    rate: u64,
    burst: u64,
}

impl Limit {
    /// Refuses what TBF cannot hold, exactly where the reference fails: it sends the bucket
    /// only as TBF's classic `buffer` and the kernel turns that back into bytes, refusing an
    /// empty bucket. (tc, which shapes here, also sends the burst in bytes, so the kernel
    /// would take more from us; a config must work with either plugin.)
    pub fn new(rate: u64, burst: u64) -> Result<Limit, Unholdable> {
        let (rate_bytes, burst_bytes) = (rate / 8, burst / 8);
        if rate_bytes == 0 {
            return Err(Unholdable::RateUnderAByte);
        }
        if burst_bytes == 0 {
            return Err(Unholdable::BurstUnderAByte);
        }
        if burst_bytes >= u64::from(u32::MAX) {
            return Err(Unholdable::BurstOver4GiB);
        }
        match classic_bucket(rate_bytes, burst_bytes) {
            (0, _) => Err(Unholdable::BurstUnderAMicrosecond),
            (_, 0) => Err(Unholdable::EmptyBucket),
            _ => Ok(Limit { rate, burst }),
        }
    }

    /// Bits per second, as configured.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes per second, what the kernel keeps.
    pub fn rate_bytes(&self) -> u64 {
        self.rate / 8
    }

    /// The qdisc, with the queue limit the reference's 25 ms of latency gives, held within
    /// TBF's 32 bits (tc would wrap a larger one, to a queue that drops every packet).
    fn tbf(&self) -> TcCommand {
        let (rate_bytes, burst_bytes) = (self.rate_bytes(), self.burst / 8);
        let limit = (burst_bytes + rate_bytes * LATENCY_MS / 1000).min(u64::from(u32::MAX));
        [
            "tbf".to_string(),
            "rate".to_string(),
            format!("{rate_bytes}bps"),
            "burst".to_string(),
            format!("{burst_bytes}b"),
            "limit".to_string(),
            format!("{limit}b"),
        ]
        .into()
    }
}

/// The bucket as the kernel derives it from TBF's classic parameters, computed as the
/// reference computes them: the burst's time at the rate in whole microseconds, then in
/// whole ticks (each a 32-bit count, wrapping as its conversions do), then capped by the
/// kernel at 2^32-1 ns and turned back into bytes at the rate with the kernel's own 64-bit
/// (wrapping) product. Returns the microseconds and the bytes.
fn classic_bucket(rate_bytes: u64, burst_bytes: u64) -> (u64, u64) {
    let wrap = |n: u128| (n & u128::from(u32::MAX)) as u64;
    let micros = wrap(u128::from(burst_bytes) * 1_000_000 / u128::from(rate_bytes));
    let ticks = wrap(u128::from(micros) * 1000 / u128::from(NS_PER_TICK));
    let nanos = (ticks * NS_PER_TICK).min(u64::from(u32::MAX));
    (micros, nanos.wrapping_mul(rate_bytes) / 1_000_000_000)
}

/// One tc command line, as separate arguments.
type TcCommand = Vec<String>;

fn tc(words: &[&str]) -> TcCommand {
    words.iter().map(|word| word.to_string()).collect()
}

/// Whether `tc -batch` reads `word` back as that one word: its line parser splits at white
/// space, takes quotes as delimiters and cuts the line at `#`, with no escape for any.
fn batch_safe(word: &str) -> bool {
    !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '#' | '\\'))
}

/// Runs `commands`: as one `tc -batch` when every word survives its line parser, else one
/// `tc` per command with the words as arguments (a link name may hold `"` or `#`, which
/// batch text cannot carry). With `force`, failures are skipped, as `tc -force` does.
fn run(commands: &[TcCommand], force: bool) -> Result<(), ToolError> {
    let ran = |args: &[&str], input: Option<&str>| match tool::run(
        "tc",
        args,
        input.map(str::as_bytes),
    ) {
        Err(ToolError::Failed { .. }) if force => Ok(()),
        other => other.map(drop),
    };
    if commands.iter().flatten().all(|word| batch_safe(word)) {
        let text: String = commands.iter().map(|c| c.join(" ") + "\n").collect();
        let mut args = vec!["-batch", "-"];
        if force {
            args.insert(0, "-force");
        }
        return ran(&args, Some(&text));
    }
    for command in commands {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        ran(&args, None)?;
    }
    Ok(())
}

/// Shapes traffic into the container on `host_veth` (`ingress`), and out of it through
/// `ifb` (`egress`), in one batch. Everything is replaced, with the filter's priority and
/// handle fixed, so a repeated ADD (a runtime's retry) ends with one set and not two.
pub fn apply(
    host_veth: &str,
    ingress: Option<Limit>,
    egress: Option<(Limit, &str)>,
) -> Result<(), ToolError> {
    let mut commands = Vec::new();
    if let Some(limit) = ingress {
        let mut qdisc = tc(&["qdisc", "replace", "dev", host_veth, "root", "handle", "1:"]);
        qdisc.extend(limit.tbf());
        commands.push(qdisc);
    }
    if let Some((limit, ifb)) = egress {
        commands.push(tc(&[
            "qdisc", "replace", "dev", host_veth, "handle", "ffff:", "ingress",
        ]));
        commands.push(tc(&[
            "filter", "replace", "dev", host_veth, "parent", "ffff:", "protocol", "all", "pref",
            "1", "handle", "800::1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
            "redirect", "dev", ifb,
        ]));
        let mut qdisc = tc(&["qdisc", "replace", "dev", ifb, "root", "handle", "1:"]);
        qdisc.extend(limit.tbf());
        commands.push(qdisc);
    }
    run(&commands, false)
}

/// Removes what [`apply`] put on `host_veth` (the ifb goes with its device); what is not
/// there is skipped.
pub fn clear(host_veth: &str) -> Result<(), ToolError> {
    run(
        &[
            tc(&["qdisc", "del", "dev", host_veth, "root"]),
            tc(&["qdisc", "del", "dev", host_veth, "ingress"]),
        ],
        true,
    )
}

/// The TBF rate (bytes/s, as the kernel keeps it) at the root of `device`, if there is one.
pub fn root_rate(device: &str) -> Result<Option<u64>, ToolError> {
    let shown = match tool::run("tc", &["-j", "qdisc", "show", "dev", device], None) {
        Ok(shown) => shown,
        // No such device: nothing shapes it.
        Err(ToolError::Failed { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let qdiscs: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
    Ok(qdiscs.as_array().into_iter().flatten().find_map(|q| {
        (q["kind"] == "tbf" && q["root"] == true)
            .then(|| q["options"]["rate"].as_u64())
            .flatten()
    }))
}

#[cfg(test)]
mod tests {
    use super::{Limit, Unholdable};

    /// Each boundary as the reference meets it on a real kernel (its ADD fails exactly on
    /// the refused side).
    #[test]
    fn refuses_what_the_reference_cannot_install_and_nothing_it_can() {
        let refused = [
            (u64::MAX, 256_000, Unholdable::BurstUnderAMicrosecond),
            (i64::MAX as u64, 256_000, Unholdable::BurstUnderAMicrosecond),
            (256_000_000_008, 256_000, Unholdable::BurstUnderAMicrosecond),
            (7, 256_000, Unholdable::RateUnderAByte),
            (8, 7, Unholdable::BurstUnderAByte),
            (1000, 8 * u64::from(u32::MAX), Unholdable::BurstOver4GiB),
            (8_000_000, 8, Unholdable::EmptyBucket),
            (8, 2_200, Unholdable::EmptyBucket),
        ];
        for (rate, burst, why) in refused {
            assert_eq!(Limit::new(rate, burst), Err(why), "{rate}/{burst}");
        }
        for (rate, burst) in [
            (256_000_000_000, 256_000),
            (255_000_000_000, 256_000),
            (1001, 256_000),
            (8, 8),
            (8, 16),
            (8, 2_300),
            (8, 8_000_000),
            (1000, 8 * u64::from(u32::MAX) - 8),
            (4_000_000_000, 256_000),
            (34_359_738_368, 256_000),
            (1_000_000_000_000, 8_000_000_000),
            (30_000_000_000_000, 8_000_000_000),
        ] {
            assert!(Limit::new(rate, burst).is_ok(), "{rate}/{burst}");
        }
    }

    #[test]
    fn the_queue_limit_stays_within_32_bits() {
        let huge = Limit::new(1000, 8 * u64::from(u32::MAX) - 8).expect("holdable");
        assert!(
            huge.tbf()
                .join(" ")
                .ends_with(&format!("limit {}b", u32::MAX)),
            "{:?}",
            huge.tbf()
        );
        let usual = Limit::new(16_000_000, 256_000).expect("holdable");
        assert_eq!(
            usual.tbf().join(" "),
            "tbf rate 2000000bps burst 32000b limit 82000b"
        );
    }

    #[test]
    fn only_plain_words_go_into_batch_text() {
        assert!(super::batch_safe("veth1a2b3c4d"));
        for word in ["v\"x", "v#x", "v'x", "v x", "v\\x", ""] {
            assert!(!super::batch_safe(word), "{word:?}");
        }
    }
}
