"""cluster/: the generated KubeRay manifests and Grafana dashboard match their generator,
and every artifact that cannot be applied here (no Kubernetes, cloud or Docker engine)
is checked offline: parsed, validated against the schemas at hand, and cross-checked
with serve_config.yaml and with each other."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

from deployments.metrics import METRICS, SERVE_METRICS
from serve.cli import main
from serve.config import AppConfig
from serve.config_file import find_application, load_serve_config
from serve.ops import kuberay
from serve.ops.preflight import check, format_report
from tests.support import REPO

CLUSTER = REPO / "cluster"
SERVE_CONFIG = REPO / "serve_config.yaml"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def rayservice() -> dict[str, Any]:
    (service,) = documents(CLUSTER / "rayservice.yaml")
    return service


def ray_pod_templates() -> list[dict[str, Any]]:
    """The head's pod template, then each worker group's."""
    spec = rayservice()["spec"]["rayClusterConfig"]
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def serve_config_v2() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    return data


def groups() -> dict[str, dict[str, Any]]:
    spec = rayservice()["spec"]["rayClusterConfig"]
    return {g["groupName"]: g for g in spec["workerGroupSpecs"]}


def production() -> dict[str, Any]:
    return find_application(load_serve_config(SERVE_CONFIG), SERVE_CONFIG, None)


def autoscaling(deployment: str) -> dict[str, Any]:
    (entry,) = [d for d in production()["deployments"] if d["name"] == deployment]
    settings: dict[str, Any] = entry["autoscaling_config"]
    return settings


# --- generated files ---------------------------------------------------------------------


def test_committed_files_are_what_the_generator_produces(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    for relative, render in kuberay.generated_files(Path("serve_config.yaml")).items():
        committed = (CLUSTER / relative).read_text(encoding="utf-8")
        assert committed == render(), f"cluster/{relative} is stale: run `jarag cluster generate`"
    assert main(["cluster", "generate", "--check"]) == 0
    capsys.readouterr()
    assert main(["cluster", "rayservice"]) == 0
    assert capsys.readouterr().out == (CLUSTER / "rayservice.yaml").read_text(encoding="utf-8")


def test_a_changed_serve_config_is_caught_as_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = tmp_path / "serve_config.yaml"
    changed.write_text(
        SERVE_CONFIG.read_text(encoding="utf-8").replace("temperature: 0.2", "temperature: 0.3"),
        encoding="utf-8",
    )
    copy = tmp_path / "cluster"
    shutil.copytree(CLUSTER, copy)
    args = ["cluster", "generate", "--serve-config", str(changed), "--out", str(copy)]
    assert main([*args, "--check"]) == 1
    assert "rayservice.yaml" in capsys.readouterr().err
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    assert "temperature: 0.3" in (copy / "rayservice.yaml").read_text(encoding="utf-8")


# --- the RayService -----------------------------------------------------------------------


def test_serve_config_v2_is_serve_config_yaml_made_fit_for_a_cluster() -> None:
    from ray.serve.schema import ServeDeploySchema

    embedded = serve_config_v2()
    ServeDeploySchema.model_validate(embedded)
    app = find_application(embedded, Path("serveConfigV2"), None)
    AppConfig.model_validate(app["args"])
    expected = load_serve_config(SERVE_CONFIG)
    expected["http_options"].update(host="0.0.0.0", port=8000)
    expected["applications"][0]["args"]["index"]["path"] = "/home/ray/app/indexes/docs"
    assert embedded == expected


def test_the_embedded_config_passes_jarag_check_on_the_clusters_pods(tmp_path: Path) -> None:
    path = tmp_path / "serveConfigV2.yaml"
    path.write_text(rayservice()["spec"]["serveConfigV2"], encoding="utf-8")
    settings = kuberay.KubeRaySettings()
    sizes = groups()
    pods = [settings.cpu_worker.ray_node(f"cpu-{i}") for i in range(sizes["cpu"]["minReplicas"])]
    pods += [settings.gpu_worker.ray_node(f"gpu-{i}") for i in range(sizes["gpu"]["maxReplicas"])]
    report = check(path, nodes=pods)
    text = format_report(report)
    assert report.ok, text
    assert report.packing is not None and report.packing.fits
    # At their max_replicas too: no warning that the replicas outgrow the cluster.
    assert "max_replicas" not in text, text
    assert "GPU 0 on gpu-0: Generator 0.7 + Embedder 0.1 + Reranker 0.1" in text


def test_worker_groups_match_the_gpu_fractions() -> None:
    gpu, cpu = groups()["gpu"], groups()["cpu"]
    (gpu_container,) = gpu["template"]["spec"]["containers"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    # One Generator per GPU (0.7 each): as many GPU pods at most as Generator replicas.
    assert gpu["maxReplicas"] == autoscaling("Generator")["max_replicas"]
    assert gpu["minReplicas"] == autoscaling("Generator")["min_replicas"] == gpu["replicas"]
    # The Embedder and Reranker replicas fit next to them, 0.1 each.
    fractions = (
        0.7
        + 0.1
        * (autoscaling("Embedder")["max_replicas"] + autoscaling("Reranker")["max_replicas"])
        / gpu["maxReplicas"]
    )
    assert fractions <= 1.0
    assert cpu["minReplicas"] >= autoscaling("Ingress")["min_replicas"]
    head = rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"


def test_the_volume_is_mounted_where_the_config_names_the_index() -> None:
    (claim,) = documents(CLUSTER / "storage.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    index = Path(find_application(serve_config_v2(), SERVE_CONFIG, None)["args"]["index"]["path"])
    for pod in (template["spec"] for template in ray_pod_templates()):
        (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[str(index.parent)]["subPath"] == "indexes"
        assert mounts[str(index.parent)]["name"] == volume["name"]


def test_gcs_fault_tolerance_and_versions() -> None:
    spec = rayservice()["spec"]
    assert spec["upgradeStrategy"]["type"] == "NewCluster"
    cluster = spec["rayClusterConfig"]
    assert cluster["rayVersion"] == kuberay.RAY_VERSION == ray.__version__
    fault_tolerance = cluster["gcsFaultToleranceOptions"]
    secret = fault_tolerance["redisPassword"]["valueFrom"]["secretKeyRef"]
    redis = {d["kind"]: d for d in documents(CLUSTER / "redis.yaml")}
    host, port = fault_tolerance["redisAddress"].split(":")
    assert redis["Service"]["metadata"]["name"] == host
    assert redis["Service"]["spec"]["ports"][0]["port"] == int(port)
    env = redis["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"] == secret
    for container in [cluster["headGroupSpec"]["template"]["spec"]["containers"][0]]:
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["serve"] == serve_config_v2()["http_options"]["port"]
        assert ports["metrics"] == kuberay.METRICS_PORT


def test_the_index_job_builds_with_the_serve_config_onto_the_volume() -> None:
    (job,) = documents(CLUSTER / "index-build-job.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    script = container["command"][-1]
    args = find_application(serve_config_v2(), SERVE_CONFIG, None)["args"]
    assert f"--out {args['index']['path']}" in script
    assert "--config /home/ray/app/serve_config.yaml" in script
    for stage in ("embedder", "reranker", "generator"):
        assert args[stage]["model"] in script
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    names = {e["name"] for e in container["env"]}
    assert "HF_HUB_OFFLINE" not in names and not names & set(kuberay.SERVE_HIGH_THROUGHPUT_ENV)


def test_the_pod_monitor_selects_the_ray_pods_metrics_port() -> None:
    (monitor,) = documents(CLUSTER / "monitoring.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    for template in ray_pod_templates():
        assert selector.items() <= template["metadata"]["labels"].items()
        ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports


def test_every_ray_node_runs_serve_in_its_high_throughput_mode() -> None:
    for template in ray_pod_templates():
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        assert kuberay.SERVE_HIGH_THROUGHPUT_ENV.items() <= env.items()
    # The production tier and the streaming benchmark run the graph in the same mode.
    (line,) = re.findall(
        r"^SERVE_HIGH_THROUGHPUT := (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE
    )
    assert dict(v.split("=") for v in line.split()) == kuberay.SERVE_HIGH_THROUGHPUT_ENV


# --- image and launcher configs ------------------------------------------------------------


def test_the_dockerfile_builds_the_project_with_the_gpu_extra_on_rays_image() -> None:
    text = (CLUSTER / "Dockerfile").read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert base == f"rayproject/ray:{kuberay.RAY_VERSION}-py311-gpu"
    assert f"ray[serve]=={kuberay.RAY_VERSION}" in text
    (workdir,) = re.findall(r"^WORKDIR (\S+)", text, re.MULTILINE)
    assert workdir == str(kuberay.WORKDIR)
    assert 'pip install --no-cache-dir -c /home/ray/constraints.txt ".[gpu]"' in text
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for sources in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert (REPO / source).exists(), source
            allowed = f"!{source}/" if (REPO / source).is_dir() else f"!{source}"
            assert allowed in ignored, f"{source} is left out of the build context"


@pytest.mark.parametrize("name", ["aws.yaml", "onprem.yaml"])
def test_launcher_configs_validate_against_rays_schema(name: str) -> None:
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    config = yaml.safe_load((CLUSTER / "launcher" / name).read_text(encoding="utf-8"))
    jsonschema.validate(config, schema)
    assert config["docker"]["image"] == kuberay.KubeRaySettings().image
    mounts = " ".join(config["docker"]["run_options"])
    assert f":{kuberay.WORKDIR}/indexes" in mounts and f":{kuberay.WORKDIR}/hf-cache" in mounts
    for source in config["file_mounts"].values():
        assert (REPO / source).is_file(), source
    assert any("--num-cpus=0" in c for c in config["head_start_ray_commands"])
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"][1:])
    mode = " ".join(f"{k}={v}" for k, v in kuberay.SERVE_HIGH_THROUGHPUT_ENV.items())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all(f"export {mode};" in c for c in start), "Serve's mode, every node"


def test_the_cloud_config_has_a_gpu_worker_per_generator_replica() -> None:
    config = yaml.safe_load((CLUSTER / "launcher" / "aws.yaml").read_text(encoding="utf-8"))
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = types["ray.worker.gpu"]
    assert gpu["resources"]["GPU"] == 1
    assert gpu["max_workers"] == autoscaling("Generator")["max_replicas"]
    assert config["max_workers"] >= sum(t.get("max_workers", 0) for t in types.values())


def test_the_onprem_config_uses_ssh_to_known_machines() -> None:
    config = yaml.safe_load((CLUSTER / "launcher" / "onprem.yaml").read_text(encoding="utf-8"))
    provider = config["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] not in provider["worker_ips"]
    assert config["auth"]["ssh_user"] and config["auth"]["ssh_private_key"]


# --- Grafana --------------------------------------------------------------------------------


def expressions() -> list[str]:
    dashboard = json.loads((CLUSTER / "grafana" / "ja-rag-serve.json").read_text("utf-8"))
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_every_dashboard_expression_uses_defined_metrics_only() -> None:
    known = {series for definition in METRICS for series in definition.exported_series}
    known |= {definition.exported_name for definition in METRICS}
    known |= set(SERVE_METRICS)
    for expr in expressions():
        used = set(re.findall(r"\bray_[a-z0-9_]+", expr))
        assert used, expr
        assert used <= known, (expr, used - known)


def test_every_defined_metric_is_on_the_dashboard() -> None:
    used = {name for expr in expressions() for name in re.findall(r"\bray_[a-z0-9_]+", expr)}
    for definition in METRICS:
        assert used & {definition.exported_name, *definition.exported_series}, definition.name
    for name in SERVE_METRICS:
        assert name in used, name
    dashboard = json.loads((CLUSTER / "grafana" / "ja-rag-serve.json").read_text("utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
