"""The server's Prometheus figures (``GET /metrics``): sessions, turns, voice-to-voice latency, emotion hops,
errors by code, LLM queue waits, refused connections. One registry per server, so tests can run several."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS_S = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
WAIT_BUCKETS_S = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class ServerMetrics:
    """Counters and histograms named ``attune_*``; ``render()`` is the exposition text."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sessions_active = Gauge("attune_sessions_active", "WebSocket sessions open now", registry=r)
        self.sessions = Counter("attune_sessions", "WebSocket sessions opened", registry=r)
        self.rejected = Counter("attune_connections_rejected", "requests refused before a route or a handshake, by "
                                "code (host_not_allowed, origin_not_allowed, unauthorized, too_many_sessions, ...)",
                                ["reason"], registry=r)
        self.closed = Counter("attune_sessions_closed", "sessions closed, by reason", ["reason"], registry=r)
        self.turns = Counter("attune_turns", "turns ended, by outcome: completed, failed, cancelled, dropped",
                             ["outcome"], registry=r)
        self.voice_to_voice = Histogram("attune_voice_to_voice_seconds",
                                        "end of the user's speech to the first reply audio", registry=r,
                                        buckets=LATENCY_BUCKETS_S)
        self.emotion_hops = Counter("attune_emotion_measurements", "emotion.measurement events sent", registry=r)
        self.errors = Counter("attune_errors", "error events sent, by code", ["code"], registry=r)
        self.llm_wait = Histogram("attune_llm_queue_wait_seconds", "time an LLM request waited for its slot",
                                  registry=r, buckets=WAIT_BUCKETS_S)
        self.llm_queued = Counter("attune_llm_requests_queued", "LLM requests that had to wait", registry=r)
        for outcome in ("completed", "failed", "cancelled", "dropped"):  # every outcome shows, 0 until it happens
            self.turns.labels(outcome)

    def render(self) -> bytes:
        return generate_latest(self.registry)
