//! Prometheus metrics, served at `/metrics` on berthd.toml's `metrics_address` when it is set
//! (none by default): RPC latencies and errors by gRPC method (a tower layer in front of every
//! service, berth.v1 and the CRI alike), containers by state, shims, pulls and the bytes they
//! downloaded. prometheus-client keeps and encodes the metrics; the HTTP side is one GET answered
//! by hand, each request read bounded and with a deadline.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

/// The metrics berthd keeps as things happen (the rest is read at each scrape).
pub struct Metrics {
    registry: Registry,
    rpc_seconds: Family<Method, Histogram>,
    rpc_errors: Family<Method, Counter>,
}

impl Metrics {
    pub fn new(containers: berth_containers::Containers, store: Arc<berth_image::Store>) -> Arc<Metrics> {
        let mut registry = Registry::default();
        // 1 ms to about 16 s, by fours.
        let rpc_seconds = Family::<Method, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 4.0, 8)));
        let rpc_errors = Family::<Method, Counter>::default();
        registry.register("berth_rpc_duration_seconds", "Time to a gRPC call's response (its headers, for a stream)", rpc_seconds.clone());
        registry.register("berth_rpc_errors", "gRPC calls answered with an error status", rpc_errors.clone());
        registry.register_collector(Box::new(Live { containers, store }));
        Arc::new(Metrics { registry, rpc_seconds, rpc_errors })
    }

    fn text(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("encode the metrics: {e}");
        }
        text
    }
}

/// What is read at each scrape: the containers' states and shims, the store's pulls.
struct Live {
    containers: berth_containers::Containers,
    store: Arc<berth_image::Store>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let records = self.containers.list();
        let mut encoded =
            encoder.encode_descriptor("berth_containers", "Containers by state", None, prometheus_client::metrics::MetricType::Gauge)?;
        for state in ["creating", "created", "running", "exited"] {
            let count = records.iter().filter(|r| r.state.as_str() == state).count() as i64;
            ConstGauge::new(count).encode(encoded.encode_family(&StateLabel { state: state.into() })?)?;
        }
        // A shim per container of its own, one per pod: those holding a live container.
        let shims: std::collections::HashSet<&str> = records.iter().filter(|r| r.state.is_live()).map(|r| r.shim.as_str()).collect();
        let gauge = ConstGauge::new(shims.len() as i64);
        gauge.encode(encoder.encode_descriptor("berth_shims", "Shims supervising live containers", None, gauge.metric_type())?)?;
        let pulls = &self.store.pulls;
        for (name, help, value) in [
            ("berth_pulls", "Image pulls (berth.v1 and the CRI)", pulls.total.load(Relaxed)),
            ("berth_pull_failures", "Image pulls that failed", pulls.failed.load(Relaxed)),
            ("berth_pull_bytes", "Bytes image pulls downloaded", pulls.bytes.load(Relaxed)),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

/// Times every gRPC call by its method (the request's path) and counts its error statuses.
#[derive(Clone)]
pub struct Layer(pub Arc<Metrics>);

impl<S> tower_layer::Layer<S> for Layer {
    type Service = Timed<S>;
    fn layer(&self, inner: S) -> Timed<S> {
        Timed { inner, metrics: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Timed<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // berthd's own services only: any other path a client sends is one label, not one each.
        let path = request.uri().path();
        let known = ["/berth.v1.", "/runtime.v1."].iter().any(|p| path.starts_with(p))
            && path.len() <= 96
            && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"./_".contains(&b));
        let method = Method { method: if known { path.to_string() } else { "other".into() } };
        let (metrics, started) = (self.metrics.clone(), Instant::now());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            metrics.rpc_seconds.get_or_create(&method).observe(started.elapsed().as_secs_f64());
            // An error answered at once is a trailers-only response: its status in the headers.
            let failed = match &response {
                Ok(r) => r.headers().get("grpc-status").is_some_and(|s| s.as_bytes() != b"0"),
                Err(_) => true,
            };
            if failed {
                metrics.rpc_errors.get_or_create(&method).inc();
            }
            response
        })
    }
}

/// The largest request read, and how long a client may take to send it.
const MAX_REQUEST: usize = 8 << 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` until berthd ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: a pause, not a busy loop.
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let response = match request.starts_with(b"GET /metrics ") || request.starts_with(b"GET /metrics?") {
                true => {
                    let body = metrics.text();
                    // prometheus-client writes OpenMetrics text (`# EOF`, `_total` samples).
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                false => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(response.as_bytes())).await;
        });
    }
}
