//! Test helpers: read an exposition back with a Prometheus text parser.

type Labels = Vec<(String, String)>;

pub(crate) fn samples(text: &str) -> Vec<(String, Labels, f64)> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("{e}"));
    scrape
        .samples
        .into_iter()
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            Some((s.metric, labels, value))
        })
        .collect()
}

/// The value of `metric` with exactly `labels`, if present.
pub(crate) fn value(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    samples(text)
        .into_iter()
        .find(|(m, l, _)| m == metric && *l == want)
        .map(|(_, _, v)| v)
}
