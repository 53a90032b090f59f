// Package exporter serves what the aggregator holds: Prometheus /metrics
// (text and OpenMetrics), the agent's own health metrics, /targets (JSON),
// /healthz and a status page, behind the standard exporter-toolkit web
// configuration (TLS, basic auth).
package exporter
