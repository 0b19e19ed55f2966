//! Every metric the service exports, declared here and nowhere else.
//!
//! Names follow `tidefeed_<subsystem>_<name>_<unit>[_total]`. Labels come
//! from bounded sets only: route templates (never raw paths), methods,
//! status codes, table names, ops, consumer names, transports — never keys
//! or tokens. Engine and feed figures are mirrored from
//! [`tidefeed_engine::Engine::metrics`] and [`tidefeed_feed::Feed`] at
//! scrape time. Each server has its own registry, so several servers can
//! live in one process (tests do).

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tidefeed_engine::{ChangeKind, Engine};
use tidefeed_feed::Feed;

/// Latency buckets from 100 µs (a durable write shares an fdatasync of
/// about 130-240 µs here) to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes, so mirrored counters are advanced once per
    /// engine increment.
    refresh: Mutex<()>,

    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,

    pub rows_written: IntCounterVec,
    pub write_duration: HistogramVec,

    pub sse_subscribers: IntGauge,
    pub sse_streams_opened: IntCounter,
    pub sse_sent_bytes: IntCounter,
    pub events_sent: IntCounterVec,

    engine: EngineMirror,
}

/// Figures owned by the engine and the feed, copied at each scrape.
struct EngineMirror {
    wal_fsyncs: IntCounter,
    wal_written_bytes: IntCounter,
    wal_rotations: IntCounter,
    commit_groups: IntCounter,
    commit_batches: IntCounter,
    commit_changes: IntCounter,
    commit_rejected_batches: IntCounter,
    memtable_rotations: IntCounter,
    immutable_memtables: IntGauge,
    flushes: IntCounter,
    flushed_bytes: IntCounter,
    compactions: IntCounter,
    compacted_bytes: IntCounter,
    write_stalls: IntCounter,
    l0_files: IntGauge,
    table_files: IntGauge,
    visible_seq: IntGauge,
    flushed_seq: IntGauge,
    low_water_seq: IntGauge,
    consumers: IntGauge,
    consumers_invalidated: IntCounter,
    consumer_lag: IntGaugeVec,
    consumer_lag_bytes: IntGaugeVec,
    oversized_events: IntCounter,
    memtable_bytes: IntGauge,
    level_bytes: IntGaugeVec,
    table_bytes: IntGauge,
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let engine = EngineMirror {
            wal_fsyncs: counter(
                &r,
                "tidefeed_wal_fsyncs_total",
                "fdatasync calls on the WAL.",
            ),
            wal_written_bytes: counter(
                &r,
                "tidefeed_wal_written_bytes_total",
                "Bytes of frames written to the WAL.",
            ),
            wal_rotations: counter(&r, "tidefeed_wal_rotations_total", "WAL segments sealed."),
            commit_groups: counter(
                &r,
                "tidefeed_commit_groups_total",
                "Commit groups (writes sharing at most one fdatasync).",
            ),
            commit_batches: counter(
                &r,
                "tidefeed_commit_batches_total",
                "Write requests committed; divided by commit groups, the mean group size.",
            ),
            commit_changes: counter(
                &r,
                "tidefeed_commit_changes_total",
                "Changes (seqs) committed.",
            ),
            commit_rejected_batches: counter(
                &r,
                "tidefeed_commit_rejected_batches_total",
                "Write requests rejected before commit (validation, preconditions).",
            ),
            memtable_rotations: counter(
                &r,
                "tidefeed_memtable_rotations_total",
                "Active memtables turned immutable.",
            ),
            immutable_memtables: gauge(
                &r,
                "tidefeed_memtable_immutable_memtables",
                "Memtables waiting for flush.",
            ),
            flushes: counter(
                &r,
                "tidefeed_lsm_flushes_total",
                "Memtables written to level 0.",
            ),
            flushed_bytes: counter(
                &r,
                "tidefeed_lsm_flushed_bytes_total",
                "Bytes of table files written by flushes.",
            ),
            compactions: counter(&r, "tidefeed_lsm_compactions_total", "Compactions run."),
            compacted_bytes: counter(
                &r,
                "tidefeed_lsm_compacted_bytes_total",
                "Bytes of table files written by compactions.",
            ),
            write_stalls: counter(
                &r,
                "tidefeed_write_stalls_total",
                "Commit groups that waited for a flush (flow control).",
            ),
            l0_files: gauge(&r, "tidefeed_lsm_l0_files", "Table files in level 0."),
            table_files: gauge(&r, "tidefeed_lsm_table_files", "Table files in all levels."),
            visible_seq: gauge(
                &r,
                "tidefeed_engine_visible_seq",
                "The highest seq readers can see.",
            ),
            flushed_seq: gauge(
                &r,
                "tidefeed_engine_flushed_seq",
                "Every seq up to this one is in table files.",
            ),
            low_water_seq: gauge(
                &r,
                "tidefeed_feed_low_water_seq",
                "Changes above this seq are retained.",
            ),
            consumers: gauge(&r, "tidefeed_feed_consumers", "Durable consumers."),
            consumers_invalidated: counter(
                &r,
                "tidefeed_feed_consumers_invalidated_total",
                "Durable consumers invalidated (retention cap or idle expiry).",
            ),
            consumer_lag: gauge_vec(
                &r,
                "tidefeed_feed_consumer_lag_seqs",
                "Changes committed after a durable consumer's acknowledged position.",
                &["consumer"],
            ),
            consumer_lag_bytes: gauge_vec(
                &r,
                "tidefeed_feed_consumer_lag_bytes",
                "Bytes of history after a durable consumer's acknowledged position (table files flushed since, plus memtables).",
                &["consumer"],
            ),
            memtable_bytes: gauge(
                &r,
                "tidefeed_memtable_bytes",
                "Bytes held by memtables, active and immutable.",
            ),
            level_bytes: gauge_vec(
                &r,
                "tidefeed_lsm_level_bytes",
                "Bytes of table files per level.",
                &["level"],
            ),
            table_bytes: gauge(
                &r,
                "tidefeed_lsm_retained_bytes",
                "Bytes of all table files: retained history and rows on disk.",
            ),
            oversized_events: counter(
                &r,
                "tidefeed_feed_oversized_events_total",
                "Events sent key-only because they exceeded the maximum event size.",
            ),
        };
        Metrics {
            http_requests: counter_vec(
                &r,
                "tidefeed_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_request_duration: histogram_vec(
                &r,
                "tidefeed_http_request_duration_seconds",
                "Time until the response starts, by route template and method.",
                &["route", "method"],
            ),
            rows_written: counter_vec(
                &r,
                "tidefeed_write_rows_total",
                "Committed row changes, by table and op.",
                &["table", "op"],
            ),
            write_duration: histogram_vec(
                &r,
                "tidefeed_write_duration_seconds",
                "Time from a write's submission to its durable commit, by kind (row, batch).",
                &["kind"],
            ),
            sse_subscribers: gauge(&r, "tidefeed_sse_subscribers", "Change streams open now."),
            sse_streams_opened: counter(
                &r,
                "tidefeed_sse_streams_opened_total",
                "Change streams opened.",
            ),
            sse_sent_bytes: counter(
                &r,
                "tidefeed_sse_sent_bytes_total",
                "Bytes of SSE frames sent (events, resolved, keep-alive, errors).",
            ),
            events_sent: counter_vec(
                &r,
                "tidefeed_feed_events_sent_total",
                "Change events sent to clients, by transport (sse, pull).",
                &["transport"],
            ),
            engine,
            refresh: Mutex::new(()),
            registry: r,
        }
    }

    /// Counts committed changes by table and op and times the write.
    pub fn record_write(&self, kind: &str, elapsed: Duration, changes: &[(&str, ChangeKind)]) {
        self.write_duration
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
        for (table, op) in changes {
            self.rows_written
                .with_label_values(&[*table, op.name()])
                .inc();
        }
    }

    /// The request-latency histogram for one route and method.
    pub fn request_duration(&self, route: &str, method: &str) -> Histogram {
        self.http_request_duration
            .with_label_values(&[route, method])
    }

    /// Copies engine and feed figures, then renders the registry in the
    /// Prometheus text format.
    pub fn render(&self, engine: &Engine, feed: &Feed, samples: &[crate::Sample]) -> String {
        {
            let _serial = self.refresh.lock().expect("metrics lock poisoned");
            self.engine.refresh(engine, feed);
        }
        let mut families = self.registry.gather();
        families.push(group_size_family(&engine.metrics()));
        families.extend(crate::component::families(samples));
        TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "metrics do not encode");
                String::new()
            })
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// `tidefeed_commit_group_size_requests`: write requests per commit group
/// (each group shares one fdatasync), as a histogram built from the
/// engine's bucket counts at scrape time.
fn group_size_family(m: &tidefeed_engine::MetricsSnapshot) -> prometheus::proto::MetricFamily {
    use prometheus::proto::{
        Bucket, Histogram as ProtoHistogram, Metric, MetricFamily, MetricType,
    };
    let mut cumulative = 0;
    let mut buckets = Vec::with_capacity(tidefeed_engine::GROUP_SIZE_BUCKETS - 1);
    // The last engine bucket (more than 1024) is the implicit +Inf one.
    for (i, count) in m.group_sizes[..tidefeed_engine::GROUP_SIZE_BUCKETS - 1]
        .iter()
        .enumerate()
    {
        cumulative += count;
        let mut bucket = Bucket::default();
        bucket.set_upper_bound((1u64 << i) as f64);
        bucket.set_cumulative_count(cumulative);
        buckets.push(bucket);
    }
    let mut histogram = ProtoHistogram::default();
    histogram.set_sample_count(m.group_sizes.iter().sum());
    histogram.set_sample_sum(m.committed_batches as f64);
    histogram.set_bucket(buckets);
    let mut metric = Metric::default();
    metric.set_histogram(histogram);
    let mut family = MetricFamily::default();
    family.set_name("tidefeed_commit_group_size_requests".to_owned());
    family.set_help("Write requests per commit group (one fdatasync each).".to_owned());
    family.set_field_type(MetricType::HISTOGRAM);
    family.set_metric(vec![metric]);
    family
}

/// Advances a mirrored counter to the source's total (totals only grow).
fn mirror(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

fn set(gauge: &IntGauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

impl EngineMirror {
    fn refresh(&self, engine: &Engine, feed: &Feed) {
        let m = engine.metrics();
        mirror(&self.wal_fsyncs, m.wal_syncs);
        mirror(&self.wal_written_bytes, m.wal_bytes);
        mirror(&self.wal_rotations, m.wal_rotations);
        mirror(&self.commit_groups, m.commit_groups);
        mirror(&self.commit_batches, m.committed_batches);
        mirror(&self.commit_changes, m.committed_changes);
        mirror(&self.commit_rejected_batches, m.rejected_batches);
        mirror(&self.memtable_rotations, m.memtable_rotations);
        set(&self.immutable_memtables, m.immutable_memtables);
        mirror(&self.flushes, m.flushes);
        mirror(&self.flushed_bytes, m.flushed_bytes);
        mirror(&self.compactions, m.compactions);
        mirror(&self.compacted_bytes, m.compacted_bytes);
        mirror(&self.write_stalls, m.write_stalls);
        set(&self.l0_files, m.l0_files);
        set(&self.table_files, m.table_files);
        set(&self.visible_seq, engine.visible_seq());
        set(&self.flushed_seq, m.flushed_seq);
        set(&self.low_water_seq, m.low_water);
        mirror(&self.consumers_invalidated, m.consumers_invalidated);
        mirror(&self.oversized_events, feed.oversized_events());
        set(&self.memtable_bytes, m.memtable_bytes);
        set(&self.table_bytes, m.table_bytes);
        for (level, bytes) in m.level_bytes.iter().enumerate() {
            set(
                &self.level_bytes.with_label_values(&[&level.to_string()]),
                *bytes,
            );
        }
        let consumers = engine.consumers();
        set(&self.consumers, consumers.len() as u64);
        // Deleted consumers disappear from the lag gauges.
        self.consumer_lag.reset();
        self.consumer_lag_bytes.reset();
        for consumer in consumers.iter().filter(|c| c.invalidated.is_none()) {
            let name = [consumer.name.as_str()];
            set(&self.consumer_lag.with_label_values(&name), consumer.lag);
            set(
                &self.consumer_lag_bytes.with_label_values(&name),
                consumer.lag_bytes,
            );
        }
    }
}
