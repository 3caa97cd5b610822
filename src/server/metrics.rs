//! Prometheus metrics (the `prometheus` crate: real histograms with cumulative buckets and the
//! text exposition format, rather than a hand-rolled writer that would have to get both right).

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub prompt_tokens: IntCounter,
    pub generated_tokens: IntCounter,
    pub queue_depth: IntGauge,
    pub active_sequences: IntGauge,
    pub cancelled: IntCounter,
    pub failed_sequences: IntCounter,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub decode_batch_size: Histogram,
    pub prefix_cache_lookups: IntCounter,
    pub prefix_cache_hits: IntCounter,
    pub prefix_cache_reused_tokens: IntCounter,
    pub prefix_cache_bytes: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(counter.clone())).expect("registered once");
    counter
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(gauge.clone())).expect("registered once");
    gauge
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    registry.register(Box::new(histogram.clone())).expect("registered once");
    histogram
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("mlxcel_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("registered once");
        let latency_buckets = prometheus::exponential_buckets(0.001, 2.0, 16).expect("valid buckets");
        Metrics {
            requests,
            prompt_tokens: counter(&registry, "mlxcel_prompt_tokens_total", "Prompt tokens of admitted requests"),
            generated_tokens: counter(&registry, "mlxcel_generated_tokens_total", "Tokens generated"),
            queue_depth: gauge(&registry, "mlxcel_queue_depth", "Requests waiting for a slot"),
            active_sequences: gauge(
                &registry,
                "mlxcel_active_sequences",
                "Sequences in a slot (prefilling or decoding)",
            ),
            cancelled: counter(&registry, "mlxcel_cancelled_sequences_total", "Sequences ended by a client disconnect"),
            failed_sequences: counter(&registry, "mlxcel_failed_sequences_total", "Sequences the engine failed"),
            time_to_first_token: histogram(
                &registry,
                "mlxcel_time_to_first_token_seconds",
                "From the request's arrival to its first generated token",
                latency_buckets.clone(),
            ),
            inter_token_latency: histogram(
                &registry,
                "mlxcel_inter_token_latency_seconds",
                "Between consecutive generated tokens of a sequence",
                latency_buckets,
            ),
            decode_batch_size: histogram(
                &registry,
                "mlxcel_decode_batch_size",
                "Sequences decoded by each batched forward pass",
                prometheus::exponential_buckets(1.0, 2.0, 10).expect("valid buckets"),
            ),
            prefix_cache_lookups: counter(&registry, "mlxcel_prefix_cache_lookups_total", "Prompts looked up"),
            prefix_cache_hits: counter(&registry, "mlxcel_prefix_cache_hits_total", "Prompts that reused cached keys"),
            prefix_cache_reused_tokens: counter(
                &registry,
                "mlxcel_prefix_cache_reused_tokens_total",
                "Prompt tokens whose keys and values came from the prefix cache",
            ),
            prefix_cache_bytes: gauge(&registry, "mlxcel_prefix_cache_bytes", "Bytes held by prefix-cache snapshots"),
            registry,
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
