//! `CNI_ARGS`: `K=V;K=V` pairs a runtime passes to the plugin. Only the plugins that read a
//! key parse them (see `skel::Attachment::args`): text a plugin ignores cannot fail it, as
//! the reference's loopback, which passes `CNI_ARGS=none` in its own tests, shows.

use super::error::ProtocolError;

/// Parsed `CNI_ARGS`. Unknown keys are kept and ignored: the reference fails on them
/// unless `IgnoreUnknown=1` is present, which breaks chaining (cni#560), so we never do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let mut pairs = Vec::new();
        for item in text.split(';').filter(|item| !item.trim().is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(ProtocolError::InvalidArgs(format!(
                    "{item:?} is not a KEY=VALUE pair"
                )));
            };
            pairs.push((key.trim().to_string(), value.trim().to_string()));
        }
        Ok(CniArgs { pairs })
    }

    /// Parses the variable as the runtime passed it, which need not be UTF-8.
    pub fn parse_os(text: &std::ffi::OsStr) -> Result<Self, ProtocolError> {
        let text = text
            .to_str()
            .ok_or_else(|| ProtocolError::InvalidArgs("not valid UTF-8".to_string()))?;
        Self::parse(text)
    }

    /// Parses the variable as the reference's dhcp plugin reads it: an item without `=` is
    /// skipped rather than refused.
    pub fn parse_loose(text: &std::ffi::OsStr) -> Self {
        let text = text.to_string_lossy();
        let pairs = text
            .split(';')
            .filter_map(|item| item.split_once('='))
            .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
            .collect();
        CniArgs { pairs }
    }

    /// The value of `key`, the last one when repeated, as Go's loader assigns the pairs in
    /// order. It may be empty: the reference's typed arguments (`IP`, `GATEWAY`, `MAC`)
    /// take that as absent, and so `IP=a;IP=` requests nothing.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_ignores_unknown_keys() {
        let args = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.2.3;").expect("parses");
        assert_eq!(args.get("IP"), Some("10.1.2.3"));
        assert_eq!(args.get("K8S_POD_NAME"), Some("web"));
        assert_eq!(args.get("MAC"), None);
        assert_eq!(
            CniArgs::parse("").expect("empty is fine"),
            CniArgs::default()
        );
    }

    #[test]
    fn the_last_value_counts_even_when_empty() {
        let args = CniArgs::parse("IP=10.1.2.3;IP=10.1.2.4;GATEWAY=").expect("parses");
        assert_eq!(args.get("IP"), Some("10.1.2.4"));
        assert_eq!(args.get("GATEWAY"), Some(""));
        let reset = CniArgs::parse("IP=10.1.2.3;IP=").expect("parses");
        assert_eq!(reset.get("IP"), Some(""));
    }

    #[test]
    fn the_loose_reading_skips_what_is_no_pair() {
        let args = CniArgs::parse_loose("none;K8S_POD_NAME=web;=x".as_ref());
        assert_eq!(args.get("K8S_POD_NAME"), Some("web"));
        assert_eq!(args.get("none"), None);
        let bytes = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"IP=\xff");
        assert!(CniArgs::parse_os(bytes).is_err(), "not UTF-8");
    }

    #[test]
    fn rejects_a_pair_without_equals() {
        let err = CniArgs::parse("IP=10.1.2.3;garbage").expect_err("must fail");
        assert!(err.to_string().contains("garbage"));
    }
}
