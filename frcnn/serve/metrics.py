"""The service's Prometheus metrics, in a registry of its own (two apps in one process do not share counts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("frcnn_requests", "HTTP requests answered, by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("frcnn_request_seconds", "Time from a request's arrival to its answer, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("frcnn_queue_depth", "Pictures waiting for a model or being detected",
                                 registry=self.registry)
        self.inference = Histogram("frcnn_inference_seconds", "One inference call of a model (a batch), in seconds",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("frcnn_batch_size", "Pictures in one inference call", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.pictures = Counter("frcnn_pictures", "Pictures detected, by model", ["model"], registry=self.registry)
        self.rejected = Counter("frcnn_rejected", "Requests turned away, by reason (queue full, timeout, ...)",
                                ["reason"], registry=self.registry)
        self.jobs = Gauge("frcnn_jobs", "Video jobs, by state", ["state"], registry=self.registry)

    def text(self) -> bytes:
        return generate_latest(self.registry)
