//! Log lines through `tracing` on stderr, where a service manager or a test collects them:
//! an RFC 3339 UTC timestamp, the level, the module, the message.
//!
//! A stderr that is closed or whose reader went away (a restarted journal, `agent | head`)
//! loses the lines, never the agent: write errors are dropped, not reported on the same
//! broken stream.

use std::str::FromStr;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `--log-level` gives: a bare level (`debug`) applies to the agent, with its
/// libraries (gRPC, HTTP/2) at `warn` so their chatter does not drown it; anything else is
/// a full filter, `warn,ferrocni_agent=debug,h2=info` (targets are module paths).
pub fn filter(text: &str) -> Result<Targets, String> {
    let text = text.trim();
    if let Ok(level) = LevelFilter::from_str(text) {
        return Ok(Targets::new()
            .with_default(LevelFilter::WARN.min(level))
            .with_target(env!("CARGO_CRATE_NAME"), level));
    }
    Targets::from_str(text).map_err(|e| format!("--log-level {text:?}: {e}"))
}

pub fn init(filter: Targets) {
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .log_internal_errors(false);
    tracing_subscriber::registry()
        .with(lines)
        .with(filter)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn a_bare_level_is_the_agents_and_libraries_stay_at_warn() {
        let debug = filter("debug").expect("parsed");
        assert!(debug.would_enable("ferrocni_agent::store", &Level::DEBUG));
        assert!(!debug.would_enable("h2::codec", &Level::DEBUG));
        assert!(debug.would_enable("h2::codec", &Level::WARN));
        let error = filter("error").expect("parsed");
        assert!(!error.would_enable("ferrocni_agent", &Level::WARN));
        assert!(!error.would_enable("h2", &Level::WARN));
    }

    #[test]
    fn a_full_filter_is_taken_as_written_and_nonsense_is_refused() {
        let custom = filter("info,h2=trace").expect("parsed");
        assert!(custom.would_enable("h2::proto", &Level::TRACE));
        assert!(!custom.would_enable("ferrocni_agent", &Level::DEBUG));
        let error = filter("x=banana").expect_err("refused");
        assert!(error.contains("--log-level"), "{error}");
    }
}
