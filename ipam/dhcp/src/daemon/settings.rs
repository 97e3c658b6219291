//! The reference daemon's flags, spelled as Go spells them (`-name value` or `-name=value`).

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";
/// A duration flag longer than this is a typo: `Instant + it` must not overflow.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub struct Settings {
    /// Already under `host_prefix`, as the reference does it.
    pub socket: PathBuf,
    pub pidfile: Option<PathBuf>,
    /// Where the host's root is mounted when the daemon runs in a container of its own.
    pub host_prefix: PathBuf,
    /// Where leases are kept across restarts of the daemon (not the reference's: it forgets
    /// them). By default beside the socket, on the host's /run, which a reboot empties along
    /// with the namespaces the leases were for.
    pub lease_dir: PathBuf,
    /// How long one acquisition may take.
    pub timeout: Duration,
    /// The longest pause between two resends.
    pub resend_max: Duration,
    /// How long one renewal keeps resending before it waits and tries again.
    pub resend_timeout: Duration,
}

impl Settings {
    pub fn parse(args: &[String]) -> Result<Settings, String> {
        let mut socket = PathBuf::from(DEFAULT_SOCKET);
        let mut lease_dir = None;
        let mut settings = Settings {
            socket: PathBuf::new(),
            pidfile: None,
            host_prefix: PathBuf::new(),
            lease_dir: PathBuf::new(),
            timeout: Duration::from_secs(10),
            resend_max: Duration::from_secs(62),
            resend_timeout: Duration::from_secs(208),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let flag = arg.trim_start_matches('-');
            if flag.len() == arg.len() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (flag, None),
            };
            // The client always sets the broadcast flag while it has no address, and reads
            // replies below IP, so it gets them either way: the flag changes nothing.
            if name == "broadcast" {
                continue;
            }
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag -{name} needs a value"))?,
            };
            match name {
                "socketpath" => socket = PathBuf::from(value),
                "pidfile" => settings.pidfile = Some(PathBuf::from(value)),
                "hostprefix" => settings.host_prefix = PathBuf::from(value),
                "leasedir" => lease_dir = Some(PathBuf::from(value)),
                "timeout" => settings.timeout = parse_duration(&value)?,
                "resendmax" => settings.resend_max = parse_duration(&value)?,
                "resendtimeout" => settings.resend_timeout = parse_duration(&value)?,
                _ => return Err(format!("unknown flag -{name}")),
            }
        }
        settings.socket = settings.on_host(&socket);
        settings.lease_dir = lease_dir.unwrap_or_else(|| {
            let dir = settings.socket.parent().unwrap_or(Path::new("/"));
            dir.join("dhcp-leases")
        });
        Ok(settings)
    }

    /// A host path as this daemon sees it: under `-hostprefix` when it runs in a container.
    pub fn on_host(&self, path: &Path) -> PathBuf {
        if self.host_prefix.as_os_str().is_empty() {
            return path.to_path_buf();
        }
        self.host_prefix
            .join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// A Go duration: `10s`, `1m30s`, `500ms`, `2h`, at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("invalid duration {text:?} (write it as 10s, 500ms, 1m30s; at most 24h)");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        let part = Duration::try_from_secs_f64(number * seconds).map_err(|_| invalid())?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= LONGEST)
            .ok_or_else(invalid)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn go_style_flags_are_understood() {
        let settings = Settings::parse(&args(
            "-socketpath /run/d.sock -timeout=2s --resendmax 1m30s -broadcast -hostprefix /host",
        ))
        .expect("parses");
        // The socket is on the host, as the reference puts it.
        assert_eq!(settings.socket, PathBuf::from("/host/run/d.sock"));
        assert_eq!(settings.lease_dir, PathBuf::from("/host/run/dhcp-leases"));
        assert_eq!(settings.timeout, Duration::from_secs(2));
        assert_eq!(settings.resend_max, Duration::from_secs(90));
        assert_eq!(
            settings.on_host(Path::new("/run/netns/c1")),
            PathBuf::from("/host/run/netns/c1")
        );
        let defaults = Settings::parse(&[]).expect("parses");
        assert_eq!(defaults.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(defaults.lease_dir, PathBuf::from("/run/cni/dhcp-leases"));
    }

    #[test]
    fn bad_flags_are_named() {
        let error = Settings::parse(&args("-timeout 10")).expect_err("no unit");
        assert!(error.contains("\"10\""), "{error}");
        let error = Settings::parse(&args("-frobnicate 1")).expect_err("unknown");
        assert!(error.contains("-frobnicate"), "{error}");
        let error = Settings::parse(&args("-socketpath")).expect_err("no value");
        assert!(error.contains("-socketpath"), "{error}");
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h1m"), Ok(Duration::from_secs(7260)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        // Absurd values are refused, not a panic later.
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("25h").is_err());
    }
}
