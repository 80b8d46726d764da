//! Severity weights, the thresholds between levels, and scoring.
//!
//! The numbers are those of aiocop 1.2.1, so scores computed by either
//! implementation, or re-computed offline from a trace, agree.

/// Network, subprocess, sleeping, recursive file-system work.
pub const WEIGHT_HEAVY: i64 = 50;
/// File I/O and file-system mutations.
pub const WEIGHT_MODERATE: i64 = 10;
/// Stat and access checks.
pub const WEIGHT_LIGHT: i64 = 1;
/// Negligible operations, reported but not scored.
pub const WEIGHT_TRIVIAL: i64 = 0;

/// A score at or above this is high severity.
pub const THRESHOLD_HIGH: i64 = 50;
/// A score at or above this (below high) is medium severity.
pub const THRESHOLD_MEDIUM: i64 = 10;
/// aiocop 1.2.1's low threshold: the score of any scored blocking I/O
/// (every score below `THRESHOLD_MEDIUM` is low).
pub const THRESHOLD_LOW: i64 = 1;

/// How bad a slice's blocking I/O was, from its summed weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SeverityLevel {
    /// Below `THRESHOLD_MEDIUM`.
    Low,
    /// From `THRESHOLD_MEDIUM` to below `THRESHOLD_HIGH`.
    Medium,
    /// `THRESHOLD_HIGH` and above.
    High,
}

impl SeverityLevel {
    /// The level's name: `"low"`, `"medium"` or `"high"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeverityLevel::Low => "low",
            SeverityLevel::Medium => "medium",
            SeverityLevel::High => "high",
        }
    }
}

/// The level of a summed score. Scores under `THRESHOLD_MEDIUM`, zero
/// included, are "low", as in aiocop 1.2.1.
pub fn level_from_score(score: i64) -> SeverityLevel {
    if score >= THRESHOLD_HIGH {
        SeverityLevel::High
    } else if score >= THRESHOLD_MEDIUM {
        SeverityLevel::Medium
    } else {
        SeverityLevel::Low
    }
}

/// Sums event weights; an event of unknown weight counts as moderate,
/// the same default aiocop 1.2.1 applies.
pub fn score<I: IntoIterator<Item = Option<i64>>>(weights: I) -> i64 {
    weights.into_iter().map(|w| w.unwrap_or(WEIGHT_MODERATE)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_change_exactly_at_the_thresholds() {
        assert_eq!(level_from_score(0), SeverityLevel::Low);
        assert_eq!(level_from_score(9), SeverityLevel::Low);
        assert_eq!(level_from_score(10), SeverityLevel::Medium);
        assert_eq!(level_from_score(49), SeverityLevel::Medium);
        assert_eq!(level_from_score(50), SeverityLevel::High);
        assert_eq!(level_from_score(5000), SeverityLevel::High);
    }

    #[test]
    fn unknown_weights_count_as_moderate() {
        assert_eq!(score([Some(WEIGHT_HEAVY), None, Some(WEIGHT_LIGHT)]), 61);
        assert_eq!(score(std::iter::empty()), 0);
    }
}
