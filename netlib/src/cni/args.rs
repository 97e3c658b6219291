//! `CNI_ARGS`: `K=V;K=V` pairs a runtime passes to the plugin.

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

    /// The value of `key`, the last one when repeated (as Go's loader assigns in order).
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
    fn rejects_a_pair_without_equals() {
        let err = CniArgs::parse("IP=10.1.2.3;garbage").expect_err("must fail");
        assert!(err.to_string().contains("garbage"));
    }
}
