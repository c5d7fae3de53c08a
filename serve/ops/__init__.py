"""Operations: the pre-flight check, cluster artefacts (KubeRay, Grafana), local clusters."""
