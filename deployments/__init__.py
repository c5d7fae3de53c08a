"""The stages of the RAG graph: plain engines plus thin Ray Serve deployments.

Engine modules import nothing from Ray, so index building, evaluation and unit
tests use exactly the code that serving runs.
"""
