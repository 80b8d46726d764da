//! How a stack frame is shown: `short/path.py:line:function`.
//!
//! Paths are shortened exactly as aiocop 1.2.1 shortens them, because users
//! match entry points against strings they already have in dashboards.

/// Drops the uninteresting prefix of a source path: everything up to and
/// including `/src/` or `/site-packages/`; for the standard library
/// (`/lib/python`) only the file name is kept.
pub fn short_path(filename: &str) -> &str {
    if let Some((_, rest)) = filename.split_once("/src/") {
        rest
    } else if let Some((_, rest)) = filename.split_once("/site-packages/") {
        rest
    } else if filename.contains("/lib/python") {
        filename.rsplit('/').next().unwrap_or(filename)
    } else {
        filename
    }
}

/// `short_path:line:function`, the form of `entry_point` and of each step
/// of a `trace`.
pub fn format_frame(filename: &str, line: i64, function: &str) -> String {
    format!("{}:{}:{}", short_path(filename), line, function)
}

/// Frames joined innermost first, the form of `BlockingEventInfo.trace`.
pub const TRACE_SEPARATOR: &str = " <- ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shortened_like_aiocop_1_2_1() {
        assert_eq!(short_path("/app/src/svc/api.py"), "svc/api.py");
        assert_eq!(short_path("/v/lib/python3.11/site-packages/httpx/_client.py"), "httpx/_client.py");
        assert_eq!(short_path("/usr/lib/python3.11/asyncio/events.py"), "events.py");
        assert_eq!(short_path("/home/me/app.py"), "/home/me/app.py");
        assert_eq!(short_path("<string>"), "<string>");
    }

    #[test]
    fn src_wins_over_site_packages_when_both_appear() {
        assert_eq!(short_path("/a/src/b/site-packages/c.py"), "b/site-packages/c.py");
    }

    #[test]
    fn frames_read_path_line_function() {
        assert_eq!(format_frame("/app/src/main.py", 12, "handler"), "main.py:12:handler");
    }
}
