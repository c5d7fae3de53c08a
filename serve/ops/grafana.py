"""The Grafana dashboard of the graph (cluster/grafana/ja-rag-serve.json).

Every query names its metrics through ``deployments.metrics``, so the dashboard and
what the deployments record cannot drift apart; a test checks that each expression
uses only defined metrics (or Ray Serve's own, ``SERVE_METRICS``) and that every
defined metric has a panel.
"""

from __future__ import annotations

from typing import Any

from deployments import metrics as m

UID = "ja-rag-serve"
APP_FILTER = 'application=~"$application"'


def _histogram_quantiles(metric: m.MetricDefinition, by: str = "") -> list[tuple[str, str]]:
    group = f"{by}, le" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric.exported_name}_bucket{{{APP_FILTER}}}[$__rate_interval])))",
            f"{legend}p{int(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def _mean(metric: m.MetricDefinition, by: str = "") -> tuple[str, str]:
    group = f" by ({by})" if by else ""
    name = metric.exported_name
    return (
        f"sum{group} (rate({name}_sum{{{APP_FILTER}}}[$__rate_interval])) / "
        f"sum{group} (rate({name}_count{{{APP_FILTER}}}[$__rate_interval]))",
        f"{{{{{by}}}}} mean" if by else "mean",
    )


def _per_deployment(name: str, aggregate: str = "sum") -> str:
    return f"{aggregate} by (deployment) ({name}{{{APP_FILTER}}})"


def _rate(name: str, by: str) -> tuple[str, str]:
    return (
        f"sum by ({by}) (rate({name}{{{APP_FILTER}}}[$__rate_interval]))",
        " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(",")),
    )


SECTIONS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "Requests (what clients see, at the ingress)",
        [
            {
                "title": "Requests per second by endpoint and status",
                "unit": "reqps",
                "targets": [_rate(m.REQUESTS.exported_name, "endpoint, status")],
            },
            {
                "title": "End-to-end latency (chat: until the last byte of the answer)",
                "unit": "s",
                "targets": _histogram_quantiles(m.REQUEST_LATENCY, "endpoint"),
            },
            {
                "title": "Errors per second by type",
                "unit": "reqps",
                "targets": [_rate(m.REQUEST_ERRORS.exported_name, "error_type")],
            },
            {
                "title": "Degraded answers per second, by the stage left out",
                "unit": "reqps",
                "targets": [_rate(m.DEGRADED_ANSWERS.exported_name, "missing_stage")],
            },
        ],
    ),
    (
        "Stages (embed, retrieve, rerank, generate)",
        [
            {
                "title": "Stage calls per second",
                "unit": "reqps",
                "targets": [_rate(m.STAGE_REQUESTS.exported_name, "stage")],
            },
            {
                "title": "Stage latency p95 and mean (batching wait included)",
                "unit": "s",
                "targets": [
                    _histogram_quantiles(m.STAGE_LATENCY, "stage")[1],
                    _mean(m.STAGE_LATENCY, "stage"),
                ],
            },
            {
                "title": "Stage errors per second by type",
                "unit": "reqps",
                "targets": [_rate(m.STAGE_ERRORS.exported_name, "stage, error_type")],
            },
            {
                "title": "Candidates retrieved per search",
                "unit": "short",
                "targets": [_mean(m.RETRIEVED_CANDIDATES)],
            },
            {
                "title": "Rerank relevance of the top passage (low: questions the index "
                "cannot answer)",
                "unit": "percentunit",
                "targets": _histogram_quantiles(m.RERANK_TOP_SCORE),
            },
            {
                "title": "Tokens generated per second",
                "unit": "short",
                "targets": [
                    (
                        f"sum (rate({m.GENERATED_TOKENS.exported_name}{{{APP_FILTER}}}"
                        "[$__rate_interval]))",
                        "tokens/s",
                    )
                ],
            },
            {
                "title": "Time to first token (at the generator)",
                "unit": "s",
                "targets": _histogram_quantiles(m.TIME_TO_FIRST_TOKEN),
            },
        ],
    ),
    (
        "Replicas and autoscaling (Ray Serve's own metrics)",
        [
            {
                "title": "Healthy replicas per deployment",
                "unit": "short",
                "targets": [
                    (_per_deployment("ray_serve_deployment_replica_healthy"), "{{deployment}}")
                ],
            },
            {
                "title": "Replicas the autoscaler wants",
                "unit": "short",
                "targets": [
                    (
                        _per_deployment("ray_serve_autoscaling_target_replicas", "max"),
                        "{{deployment}}",
                    )
                ],
            },
            {
                "title": "Requests in flight per replica (compared with target_ongoing_requests)",
                "unit": "short",
                "targets": [
                    (
                        _per_deployment("ray_serve_replica_processing_queries")
                        + " / "
                        + _per_deployment("ray_serve_deployment_replica_healthy"),
                        "{{deployment}}",
                    )
                ],
            },
            {
                "title": "Requests queued at callers, waiting for a replica",
                "unit": "short",
                "targets": [
                    (_per_deployment("ray_serve_deployment_queued_queries"), "{{deployment}}")
                ],
            },
            {
                "title": "HTTP requests per second through Serve's proxies, by status",
                "unit": "reqps",
                "targets": [
                    (
                        "sum by (status_code) "
                        f"(rate(ray_serve_num_http_requests_total{{{APP_FILTER}}}"
                        "[$__rate_interval]))",
                        "{{status_code}}",
                    )
                ],
            },
        ],
    ),
]


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    panel_id = 1
    for title, section in SECTIONS:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        for number, spec in enumerate(section):
            panels.append(
                {
                    "id": panel_id,
                    "type": "timeseries",
                    "title": spec["title"],
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "fieldConfig": {"defaults": {"unit": spec["unit"]}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                    "gridPos": {
                        "h": 8,
                        "w": 12,
                        "x": 12 * (number % 2),
                        "y": y + 8 * (number // 2),
                    },
                    "targets": [
                        {
                            "refId": chr(ord("A") + i),
                            "datasource": {"type": "prometheus", "uid": "${datasource}"},
                            "expr": expr,
                            "legendFormat": legend,
                        }
                        for i, (expr, legend) in enumerate(spec["targets"])
                    ],
                }
            )
            panel_id += 1
        y += 8 * ((len(section) + 1) // 2)
    return {
        "uid": UID,
        "title": "ja-rag-serve",
        "description": "The RAG graph on Ray Serve: requests, stages, replicas and autoscaling. "
        "Generated by `jarag cluster generate` from deployments/metrics.py.",
        "tags": ["ray", "ray-serve", "rag"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                {
                    "name": "application",
                    "label": "Serve application",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({m.REQUESTS.exported_name}, application)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "current": {},
                },
            ]
        },
        "panels": panels,
    }
