//! Prometheus metrics. Label values stay bounded: route templates rather than
//! raw paths, configured model names, never user or conversation ids.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: Cow<'static, str>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    pub provider: String,
    pub model: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub kind: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 100 s.
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

fn llm_histogram() -> Histogram {
    // 10 ms to about 10 minutes.
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub llm_requests: Family<LlmLabels, Counter>,
    pub llm_duration: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub llm_tokens: Family<TokenLabels, Counter>,
    pub rate_limited: Counter,
    pub visitors: Counter,
    pub active_conversations: Gauge,
    pub upload_bytes: Counter,
    pub artifacts: Counter,
    pub artifact_bytes: Counter,
    pub artifact_downloads: Counter,
    pub tokens_today: Gauge<i64, AtomicI64Compat>,
    visits_by_address:
        parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
    models: parking_lot::RwLock<std::collections::HashMap<String, ModelMetrics>>,
}

/// One model's series, taken from their families once: every turn counts
/// four of them, and each lookup in a family copied and hashed its labels.
struct ModelMetrics {
    provider: String,
    duration: Histogram,
    succeeded: Counter,
    prompt_tokens: Counter,
    completion_tokens: Counter,
}

/// Models whose series are kept at hand; models are configured, so this is
/// only a bound.
const MAX_MODELS_AT_HAND: usize = 1_000;

/// Visits one address may count per minute, so that the counter cannot be
/// inflated without bound from one client.
const VISITS_PER_MINUTE: u32 = 10;

/// The gauge's atomic type (an alias keeps the field's type readable).
pub type AtomicI64Compat = std::sync::atomic::AtomicI64;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            );
        let llm_requests = Family::<LlmLabels, Counter>::default();
        let llm_duration =
            Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                llm_histogram as fn() -> Histogram,
            );
        let llm_tokens = Family::<TokenLabels, Counter>::default();
        let rate_limited = Counter::default();
        let visitors = Counter::default();
        let active_conversations = Gauge::default();
        let upload_bytes = Counter::<u64, AtomicU64>::default();
        let artifacts = Counter::default();
        let artifact_bytes = Counter::default();
        let artifact_downloads = Counter::default();
        let tokens_today = Gauge::default();

        registry.register(
            "magdi_http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        registry.register(
            "magdi_http_request_duration_seconds",
            "Time to answer HTTP requests",
            http_duration.clone(),
        );
        registry.register(
            "magdi_llm_requests",
            "Calls to the model provider",
            llm_requests.clone(),
        );
        registry.register(
            "magdi_llm_request_duration_seconds",
            "Time the model provider took",
            llm_duration.clone(),
        );
        registry.register(
            "magdi_llm_tokens",
            "Tokens spent, by model and kind",
            llm_tokens.clone(),
        );
        registry.register(
            "magdi_rate_limited",
            "Requests refused over the daily allowance",
            rate_limited.clone(),
        );
        registry.register(
            "magdi_visitors",
            "Visits counted by /metrics-update-visitors",
            visitors.clone(),
        );
        registry.register(
            "magdi_active_conversations",
            "Conversations not yet ended",
            active_conversations.clone(),
        );
        registry.register(
            "magdi_upload_bytes",
            "Bytes uploaded into workspaces",
            upload_bytes.clone(),
        );
        registry.register("magdi_artifacts", "Artifacts built", artifacts.clone());
        registry.register(
            "magdi_artifact_bytes",
            "Bytes of artifacts built",
            artifact_bytes.clone(),
        );
        registry.register(
            "magdi_artifact_downloads",
            "Artifacts downloaded completely",
            artifact_downloads.clone(),
        );
        registry.register(
            "magdi_tokens_today",
            "Tokens spent by everybody today (UTC)",
            tokens_today.clone(),
        );

        Self {
            registry,
            http_requests,
            http_duration,
            llm_requests,
            llm_duration,
            llm_tokens,
            rate_limited,
            visitors,
            active_conversations,
            upload_bytes,
            artifacts,
            artifact_bytes,
            artifact_downloads,
            tokens_today,
            visits_by_address: Default::default(),
            models: Default::default(),
        }
    }

    /// Counts a visit unless this address has counted too many this minute.
    pub fn count_visit(&self, address: Option<std::net::IpAddr>) {
        let now = std::time::Instant::now();
        if let Some(ip) = address {
            let mut visits = self.visits_by_address.lock();
            if visits.len() > 100_000 {
                visits.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 60);
            }
            let entry = visits.entry(ip).or_insert((now, 0));
            if now.duration_since(entry.0).as_secs() >= 60 {
                *entry = (now, 0);
            }
            if entry.1 >= VISITS_PER_MINUTE {
                return;
            }
            entry.1 += 1;
        }
        self.visitors.inc();
    }

    /// The text exposition of every family.
    pub fn render(&self) -> String {
        let mut open_metrics = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        to_prometheus_text(&open_metrics)
    }

    /// Counts a call to the provider: how it ended (`ok` or why it failed)
    /// and how long it took.
    pub fn count_llm_call(&self, provider: &str, model: &str, outcome: &str, seconds: f64) {
        self.with_model(provider, model, |series| {
            series.duration.observe(seconds);
            if outcome == "ok" {
                series.succeeded.inc();
            }
        });
        if outcome != "ok" {
            self.llm_requests
                .get_or_create(&LlmLabels {
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc();
        }
    }

    pub fn count_tokens(&self, provider: &str, model: &str, prompt: u64, completion: u64) {
        self.with_model(provider, model, |series| {
            series.prompt_tokens.inc_by(prompt);
            series.completion_tokens.inc_by(completion);
        });
        self.tokens_today
            .inc_by(i64::try_from(prompt + completion).unwrap_or(i64::MAX));
    }

    fn with_model(&self, provider: &str, model: &str, count: impl FnOnce(&ModelMetrics)) {
        if let Some(series) = self
            .models
            .read()
            .get(model)
            .filter(|series| series.provider == provider)
        {
            return count(series);
        }
        let token_series = |kind: &str| {
            self.llm_tokens
                .get_or_create(&TokenLabels {
                    model: model.to_owned(),
                    kind: kind.to_owned(),
                })
                .clone()
        };
        let series = ModelMetrics {
            provider: provider.to_owned(),
            duration: self
                .llm_duration
                .get_or_create(&ModelLabels {
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                })
                .clone(),
            succeeded: self
                .llm_requests
                .get_or_create(&LlmLabels {
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    outcome: "ok".to_owned(),
                })
                .clone(),
            prompt_tokens: token_series("prompt"),
            completion_tokens: token_series("completion"),
        };
        count(&series);
        let mut models = self.models.write();
        if models.len() < MAX_MODELS_AT_HAND {
            models.insert(model.to_owned(), series);
        }
    }
}

/// The registry writes OpenMetrics text, where a counter's HELP and TYPE name
/// the family (`magdi_visitors`) and its sample adds `_total`. Prometheus'
/// own text format, which `/metrics` serves and promtool checks, names them
/// after the sample, and has no `# EOF`.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_after_their_samples_in_prometheus_text() {
        let metrics = super::Metrics::new();
        metrics.visitors.inc();
        let text = metrics.render();
        assert!(text.contains("# HELP magdi_visitors_total "), "{text}");
        assert!(
            text.contains("# TYPE magdi_visitors_total counter\nmagdi_visitors_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE magdi_active_conversations gauge"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }
}
