//! The process-wide Prometheus recorder behind `/metrics`. Installed once per process; every
//! stage records through the `metrics` facade. Each scrape also samples the process itself
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, open files, threads).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets (seconds) for every `*_seconds` histogram: 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for real-time factors (processing time over audio time): above 1 is behind.
const RATIO_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0,
];

/// Samples the process's CPU, memory, threads and files.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        collector
    })
}

/// The `/metrics` page: the process sampled now, then every series.
pub fn render() -> String {
    process_collector().collect();
    prometheus().render()
}

/// The recorder's handle, installing the recorder on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("buckets are not empty")
            .set_buckets_for_metric(Matcher::Suffix("_real_time_factor".into()), RATIO_BUCKETS)
            .expect("buckets are not empty")
            .install_recorder()
            .expect("the Prometheus recorder is installed only here, once")
    })
}
