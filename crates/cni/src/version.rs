//! CNI spec versions: parsing, ordering and what each version allows.

use std::fmt;

/// A CNI spec version this toolkit can read or write.
///
/// Ordered oldest first, so comparisons (`>= V0_4_0`) read like the spec's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    /// Every version a ferrocni plugin speaks, as the reference's `version.All`.
    pub const ALL: [Version; 7] = [
        Version::V0_1_0,
        Version::V0_2_0,
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];
    pub const LATEST: Version = Version::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_1_0 => "0.1.0",
            Version::V0_2_0 => "0.2.0",
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a `cniVersion` value. An absent or empty version means 0.1.0, as libcni
    /// decides for configs written before the field existed.
    pub fn parse(text: &str) -> Option<Version> {
        if text.is_empty() {
            return Some(Version::V0_1_0);
        }
        Version::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The version as numbers, for comparing it with a version this toolkit does not know.
    pub fn numbers(self) -> Numbers {
        numbers(self.as_str()).unwrap_or_default()
    }

    /// Which result layout this version prints.
    pub fn result_layout(self) -> ResultLayout {
        match self {
            Version::V0_1_0 | Version::V0_2_0 => ResultLayout::Legacy,
            Version::V0_3_0 | Version::V0_3_1 | Version::V0_4_0 => ResultLayout::Versioned,
            Version::V1_0_0 | Version::V1_1_0 => ResultLayout::Current,
        }
    }
}

/// A version as major, minor and micro numbers.
pub type Numbers = (u64, u64, u64);

/// Reads any `cniVersion` as numbers, as the reference's `version.ParseVersion` does for the
/// verbs that came after 0.1.0: empty means 0.1.0, missing parts are 0, and anything but one
/// to three dot-separated numbers is `None`.
pub fn numbers(text: &str) -> Option<Numbers> {
    if text.is_empty() {
        return Some((0, 1, 0));
    }
    let mut parts = [0u64; 3];
    for (i, part) in text.split('.').enumerate() {
        *parts.get_mut(i)? = part.parse().ok()?;
    }
    Some((parts[0], parts[1], parts[2]))
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three wire shapes results have had over the spec's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultLayout {
    /// 0.1.0/0.2.0: `ip4`/`ip6` objects, one address per family.
    Legacy,
    /// 0.3.x/0.4.0: `interfaces` and `ips`, each IP carrying `"version"`.
    Versioned,
    /// 1.x: as 0.4.0 without `version`, plus interface `mtu`/`socketPath`/`pciID`.
    Current,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_known_version_and_defaults_empty_to_010() {
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
        assert_eq!(Version::parse(""), Some(Version::V0_1_0));
        assert_eq!(Version::parse("1.2.0"), None);
        assert_eq!(Version::parse("abc"), None);
    }

    #[test]
    fn unknown_versions_still_compare() {
        assert_eq!(numbers(""), Some((0, 1, 0)));
        assert_eq!(numbers("9.9.9"), Some((9, 9, 9)));
        assert_eq!(numbers("1.0"), Some((1, 0, 0)));
        assert_eq!(numbers("2"), Some((2, 0, 0)));
        assert_eq!(numbers("1.0.0.0"), None);
        assert_eq!(numbers("abc"), None);
        assert_eq!(numbers("1..0"), None);
        assert!(numbers("0.4.5") > Some(Version::V0_4_0.numbers()));
        assert!(Version::V0_3_1.numbers() < Version::V0_4_0.numbers());
    }

    #[test]
    fn ordering_follows_release_order() {
        assert!(Version::V0_3_1 > Version::V0_3_0);
        assert!(Version::V1_0_0 > Version::V0_4_0);
        assert_eq!(Version::V0_4_0.result_layout(), ResultLayout::Versioned);
    }
}
