//! How numbers read in text: milliseconds, shares and counts, the same in
//! every output format ([`crate::export`]), in `info` ([`crate::info`]) and
//! in the warnings of reading ([`crate::read`]). A leaf: it uses nothing of
//! the crate.

/// Milliseconds as every text format shows them.
pub fn fmt_ms(ms: f64) -> String {
    format!("{ms:.3}")
}

/// A duration in milliseconds without trailing zeros: `100`, `0.5`.
pub fn fmt_short_ms(ms: f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `1 slice`, `2 slices`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A share (0 to 1) as a percentage: `97%`, `99.5%`, `<0.1%`.
pub fn fmt_share(share: f64) -> String {
    let percent = share * 100.0;
    if percent > 0.0 && percent < 0.1 {
        "<0.1%".to_owned()
    } else if percent >= 99.95 || percent == percent.round() {
        format!("{percent:.0}%")
    } else {
        format!("{percent:.1}%")
    }
}
