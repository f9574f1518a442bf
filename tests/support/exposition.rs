//! Reading `/metrics`: the Prometheus text exposition as sample values by metric name.

use std::collections::HashMap;

/// Every sample of one metric: its label text (`a="x",b="y"`) and its value.
pub type Samples = HashMap<String, Vec<(String, f64)>>;

/// `name{labels} value` lines of the exposition, by metric name and label text.
pub fn samples(text: &str) -> Samples {
    let mut found: Samples = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        found
            .entry(name.to_string())
            .or_default()
            .push((labels.to_string(), value.parse().expect("a number")));
    }
    found
}

/// The sum of a metric's samples whose labels contain every one of `having`.
pub fn total(samples: &Samples, name: &str, having: &[&str]) -> f64 {
    samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} is missing"))
        .iter()
        .filter(|(labels, _)| having.iter().all(|h| labels.contains(h)))
        .map(|(_, value)| value)
        .sum()
}
