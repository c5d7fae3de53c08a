"""Ingress stage: the HTTP API (FastAPI) that chains the other stages."""
