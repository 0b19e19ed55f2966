//! Components the service reports on without knowing them: the binary
//! registers, say, the Kafka connector as a [`Component`], and its status
//! appears in `GET /v1/status` under its name and its figures in
//! `/metrics`. (The http crate knows nothing of Kafka; the layering holds.)

use serde_json::Value as Json;

/// Whether a sample only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Counter,
    Gauge,
}

/// One metric sample. Samples of one `name` form one family; labels come
/// from bounded sets only.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The full metric name, `tidefeed_<subsystem>_<name>_<unit>[_total]`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: SampleKind,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A part of the process whose state the service reports.
pub trait Component: Send + Sync {
    /// Its key in `GET /v1/status` (e.g. `"kafka"`).
    fn name(&self) -> &'static str;
    /// Its status, as JSON. Called per request: cheap, no I/O.
    fn status(&self) -> Json;
    /// Its metrics. Called per scrape: cheap, no I/O.
    fn samples(&self) -> Vec<Sample>;
}

/// The samples as Prometheus metric families, one per name, in the order
/// names first appear.
pub(crate) fn families(samples: &[Sample]) -> Vec<prometheus::proto::MetricFamily> {
    use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
    let mut families: Vec<MetricFamily> = Vec::new();
    for sample in samples {
        let position = families.iter().position(|f| f.name() == sample.name);
        let family = match position {
            Some(i) => &mut families[i],
            None => {
                let mut family = MetricFamily::default();
                family.set_name(sample.name.to_owned());
                family.set_help(sample.help.to_owned());
                family.set_field_type(match sample.kind {
                    SampleKind::Counter => MetricType::COUNTER,
                    SampleKind::Gauge => MetricType::GAUGE,
                });
                families.push(family);
                families.last_mut().expect("just pushed")
            }
        };
        let mut metric = Metric::default();
        metric.set_label(
            sample
                .labels
                .iter()
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name((*name).to_owned());
                    pair.set_value(value.clone());
                    pair
                })
                .collect(),
        );
        match sample.kind {
            SampleKind::Counter => {
                let mut counter = Counter::default();
                counter.set_value(sample.value);
                metric.set_counter(counter);
            }
            SampleKind::Gauge => {
                let mut gauge = Gauge::default();
                gauge.set_value(sample.value);
                metric.set_gauge(gauge);
            }
        }
        family.mut_metric().push(metric);
    }
    families
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_group_into_families_by_name() {
        let sample = |name, kind, labels: &[(&'static str, &str)], value| Sample {
            name,
            help: "help",
            kind,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        };
        let families = families(&[
            sample("tidefeed_x_total", SampleKind::Counter, &[], 3.0),
            sample("tidefeed_y", SampleKind::Gauge, &[("state", "a")], 1.0),
            sample("tidefeed_y", SampleKind::Gauge, &[("state", "b")], 0.0),
        ]);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap();
        assert!(
            text.contains("# TYPE tidefeed_x_total counter\ntidefeed_x_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("tidefeed_y{state=\"a\"} 1\ntidefeed_y{state=\"b\"} 0\n"),
            "{text}"
        );
        assert_eq!(families.len(), 2);
    }
}
