"""Operations: the pre-flight check, replica packing, cluster artefacts (KubeRay,
Grafana) and local multi-node clusters."""
