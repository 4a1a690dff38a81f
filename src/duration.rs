//! Durations as users write them (`90s`, `15m`, `1h`, `1h30m`, `2d`), for flags and spec fields.

use std::time::Duration;

/// Parses `90s`, `15m`, `1h`, `1h30m`, `2d` (a day is 24 hours).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let span: jiff::Span = s
        .parse()
        .map_err(|_| format!("'{s}' is not a duration: use e.g. 30s, 15m, 1h, 1h30m"))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("'{s}': {e}"))?;
    Duration::try_from(d).map_err(|_| format!("'{s}' must be positive"))
}

/// `2h`, `90m`, `45s`: the shortest exact form, for messages.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert_eq!(humanize(Duration::from_secs(7200)), "2h");
        assert_eq!(humanize(Duration::from_secs(90)), "90s");
    }
}
