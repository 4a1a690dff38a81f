//! Durations as users write them (`90s`, `15m`, `1h`, `1h30m`, `2d`), for flags and spec fields.

use std::time::Duration;

/// A duration that cannot be read, with what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("'{0}' is not a duration: use e.g. 30s, 15m, 1h, 1h30m")]
    NotADuration(String),
    #[error("'{0}': {1}")]
    OutOfRange(String, String),
    #[error("'{0}' must be positive")]
    Negative(String),
}

/// Parses `90s`, `15m`, `1h`, `1h30m`, `2d` (a day is 24 hours).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let span: jiff::Span = s
        .parse()
        .map_err(|_| DurationError::NotADuration(s.into()))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| DurationError::OutOfRange(s.into(), e.to_string()))?;
    Duration::try_from(d).map_err(|_| DurationError::Negative(s.into()))
}

/// A duration as a flag takes and shows it (`7d`, `24h`): clap's default values print with
/// [`humanize`], so a flag's default is the core's constant itself, not a copy in a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human(pub Duration);

impl std::fmt::Display for Human {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&humanize(self.0))
    }
}

impl std::str::FromStr for Human {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Human, DurationError> {
        parse_duration(s).map(Human)
    }
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
                .to_string()
                .contains("not a duration")
        );
        assert_eq!("7d".parse::<Human>().unwrap().to_string(), "7d");
        assert_eq!(humanize(Duration::from_secs(7200)), "2h");
        assert_eq!(humanize(Duration::from_secs(90)), "90s");
    }
}
