//! Output as docker users read and script it: `--format table|json|TEMPLATE`, where a template is
//! Go's text/template (`{{.Names}}`, `{{json .}}`, `table {{.ID}}\t{{.Status}}` with a header)
//! through gtmpl, the Rust implementation docker-style tools use, rather than an engine of our
//! own; human sizes (docker's SI units) and ages ("About a minute ago").

use std::collections::HashMap;

/// What `--format` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    /// A Go template per item; `header` for docker's `table TEMPLATE` (a header of its fields).
    Template {
        text: String,
        header: bool,
    },
}

/// `--format`'s value: `table`, `json`, `table TEMPLATE` or `TEMPLATE` (checked as it is parsed).
pub fn output(text: &str) -> Result<Output, String> {
    let (text, header) = match text.strip_prefix("table") {
        Some("") => return Ok(Output::Table),
        Some(rest) if rest.starts_with(char::is_whitespace) => (rest.trim_start(), true),
        _ if text == "json" => return Ok(Output::Json),
        _ => (text, false),
    };
    // Go's templates take \t and \n escapes in the format string, as docker's users type them.
    let text = text.replace("\\t", "\t").replace("\\n", "\n");
    template(&text).map_err(|e| format!("--format {text:?}: {e}"))?;
    Ok(Output::Template { text, header })
}

fn template(text: &str) -> Result<gtmpl::Template, String> {
    let mut template = gtmpl::Template::default();
    template.add_func("json", json_func);
    template.parse(text).map_err(|e| e.to_string())?;
    Ok(template)
}

/// docker's `json` template function: its argument as JSON.
fn json_func(args: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
    let value = args.first().map(from_gtmpl).unwrap_or(serde_json::Value::Null);
    Ok(gtmpl::Value::String(value.to_string()))
}

fn to_gtmpl(value: &serde_json::Value) -> gtmpl::Value {
    match value {
        serde_json::Value::Null => gtmpl::Value::Nil,
        serde_json::Value::Bool(b) => gtmpl::Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => gtmpl::Value::from(u),
            (_, Some(i), _) => gtmpl::Value::from(i),
            (_, _, f) => gtmpl::Value::from(f.unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => gtmpl::Value::String(s.clone()),
        serde_json::Value::Array(items) => gtmpl::Value::Array(items.iter().map(to_gtmpl).collect()),
        serde_json::Value::Object(map) => gtmpl::Value::Object(map.iter().map(|(k, v)| (k.clone(), to_gtmpl(v))).collect::<HashMap<_, _>>()),
    }
}

fn from_gtmpl(value: &gtmpl::Value) -> serde_json::Value {
    match value {
        gtmpl::Value::Bool(b) => (*b).into(),
        gtmpl::Value::String(s) => s.clone().into(),
        gtmpl::Value::Number(n) => {
            n.as_u64().map(Into::into).or_else(|| n.as_i64().map(Into::into)).or_else(|| n.as_f64().map(Into::into)).unwrap_or_default()
        }
        gtmpl::Value::Array(items) => items.iter().map(from_gtmpl).collect(),
        gtmpl::Value::Object(map) | gtmpl::Value::Map(map) => {
            // Sorted keys, so the output is the same every time.
            let sorted: std::collections::BTreeMap<_, _> = map.iter().map(|(k, v)| (k.clone(), from_gtmpl(v))).collect();
            serde_json::to_value(sorted).unwrap_or_default()
        }
        _ => serde_json::Value::Null,
    }
}

/// Prints `items` (docker's fields of each, as JSON objects) through a template; with `header`,
/// first a line of the template's field names in capitals, as docker's `table` prints.
pub fn print_template(text: &str, header: bool, items: &[serde_json::Value]) -> anyhow::Result<()> {
    let template = template(text).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    if header {
        let mut titles = text.to_string();
        while let (Some(start), Some(end)) = (titles.find("{{"), titles.find("}}")) {
            if end < start {
                break;
            }
            let field = titles[start + 2..end].trim().trim_start_matches('.').to_uppercase();
            titles.replace_range(start..end + 2, &field);
        }
        println!("{titles}");
    }
    for item in items {
        let rendered = template.render(&gtmpl::Context::from(to_gtmpl(item))).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
        println!("{rendered}");
    }
    Ok(())
}

/// A table with columns as wide as their widest cell (the last one as it is), two spaces apart.
pub fn print_table(titles: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..titles.len())
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).chain([titles[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| if i < last { format!("{c:<w$}", w = widths[i]) } else { c.to_string() }).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(titles.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Bytes as docker prints them: SI units, four significant digits (`4.865MB`).
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = match value {
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
    format!("{text}{}", units[unit])
}

/// How long ago, as docker says it ("Less than a second", "About a minute", "3 weeks").
pub fn human_duration(seconds: u64) -> String {
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    match seconds {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Nanoseconds since the epoch as RFC 3339 (UTC, seconds).
pub fn rfc3339(ns: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)).to_string()
}

/// A time in JSON output: RFC 3339 in UTC to the nanosecond, as docker's and podman's JSON give
/// it; a time that has not happened (0: not started yet, not finished) is Go's zero time, as
/// theirs is.
pub fn json_time(ns: u64) -> String {
    match ns {
        0 => "0001-01-01T00:00:00Z".into(),
        ns => humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)).to_string(),
    }
}

/// Seconds from `then` (nanoseconds since the epoch) to now.
pub fn seconds_since(then_ns: u64) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    now.saturating_sub(then_ns) / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_as_docker_takes_them() {
        assert_eq!(output("table"), Ok(Output::Table));
        assert_eq!(output("json"), Ok(Output::Json));
        assert_eq!(output("{{.Names}}"), Ok(Output::Template { text: "{{.Names}}".into(), header: false }));
        assert_eq!(output("table {{.ID}}\\t{{.Names}}"), Ok(Output::Template { text: "{{.ID}}\t{{.Names}}".into(), header: true }));
        assert!(output("{{.Names").is_err(), "an unclosed action");
    }

    #[test]
    fn templates_render_fields_and_json() {
        let item = serde_json::json!({"Names": "web", "Labels": {"a": "1"}, "Size": 3});
        let t = template("{{.Names}} {{json .Labels}} {{.Size}}").unwrap();
        assert_eq!(t.render(&gtmpl::Context::from(to_gtmpl(&item))).unwrap(), r#"web {"a":"1"} 3"#);
    }

    #[test]
    fn sizes_and_ages_read_as_dockers() {
        assert_eq!(
            (human_size(0), human_size(999), human_size(4_865_000), human_size(1_500_000_000)),
            ("0B".into(), "999B".into(), "4.865MB".into(), "1.5GB".into())
        );
        assert_eq!(
            (human_duration(0), human_duration(75), human_duration(3700), human_duration(3 * 86400)),
            ("Less than a second".to_string(), "About a minute".to_string(), "About an hour".to_string(), "3 days".to_string())
        );
        assert_eq!(human_duration(90 * 86400), "3 months");
    }

    #[test]
    fn json_times_are_rfc3339_and_zero_is_gos_zero_time() {
        assert_eq!(json_time(1_764_864_000_123_456_789), "2025-12-04T16:00:00.123456789Z");
        assert_eq!(json_time(0), "0001-01-01T00:00:00Z");
    }
}
