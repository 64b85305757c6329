"""The Kubernetes deployment, checked as far as it can be without a cluster: the Job that dagster-k8s's
k8s_job_executor would create for a `generations` step, built with dagster-k8s's own job construction from
the step's op tags, deploy/k8s/executor.yaml and the Helm values' run launcher settings, asks for one
nvidia.com/gpu, lands on GPU nodes, takes its secrets from a Kubernetes Secret and validates against the
Kubernetes API schema (kubernetes-validate); the Helm values hold no secret value; deploy/Dockerfile installs
what the lock pins, as `make` does."""
import re
from pathlib import Path

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)

from assets.generations import generations
from eval_pipeline.orchestration.executors import deployment_executor, executor_config
from eval_pipeline.stores.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUBERNETES = "1.33.0"  # a release kubernetes-validate ships the schema of


def _step_job(step_tags: dict, executor: dict, step: str) -> dict:
    """The Job body for one step, merged as dagster-k8s's K8sStepHandler merges it (executor config, then
    the step's dagster-k8s/config tags, then per_step_k8s_config), as the API client would send it."""
    context = K8sContainerContext(
        env_secrets=executor.get("env_secrets"), namespace=executor.get("job_namespace"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor.get("step_k8s_config", {})))
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags))).merge(
        K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            executor.get("per_step_k8s_config", {}).get(step, {}))))
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    # what the chart's K8sRunLauncher is configured with (DAGSTER_HOME, instance ConfigMap, PG secret)
    job_config = DagsterK8sJobConfig(job_image=image, dagster_home="/opt/dagster/dagster_home",
                                     instance_config_map="evals-dagster-instance",
                                     postgres_password_secret=values["global"]["postgresqlSecretName"])
    job = construct_dagster_k8s_job(
        job_config=job_config, args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{get_k8s_job_name('0f7e1c2a-run', step)}", component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": "generation", "dagster/op": step, "dagster/code-location": "eval_pipeline"},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": step}])
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


@pytest.fixture(scope="module")
def executor() -> dict:
    return executor_config(DEPLOY / "k8s" / "executor.yaml", "EVAL_PIPELINE_K8S_EXECUTOR_CONFIG")


def test_the_generation_step_job_asks_for_a_gpu_on_gpu_nodes_and_is_a_valid_kubernetes_job(executor):
    tags = generations.op.tags
    body = _step_job(tags, executor, "generations")
    kubernetes_validate.validate(body, KUBERNETES, strict=True)  # raises on any schema violation
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["memory"] == "32Gi"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"secretRef": {"name": "eval-pipeline-secrets"}} in container["envFrom"]


def test_other_steps_get_no_gpu_and_no_gpu_node(executor):
    body = _step_job({}, executor, "grades")
    kubernetes_validate.validate(body, KUBERNETES, strict=True)
    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in (container["resources"].get("limits") or {})
    assert not pod.get("nodeSelector") and not pod.get("tolerations")


def test_a_broken_job_fails_validation(executor):
    body = _step_job(generations.op.tags, executor, "generations")
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = "one gpu"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(body, KUBERNETES, strict=True)


def test_the_code_location_takes_the_k8s_executor_from_its_file():
    settings = Settings.from_env({"EVAL_PIPELINE_HOME": "/tmp/unused",
                                  "EVAL_PIPELINE_K8S_EXECUTOR_CONFIG": str(DEPLOY / "k8s" / "executor.yaml")})
    executor_def = deployment_executor(settings)
    assert executor_def is not None and executor_def.name == "k8s"


def test_the_helm_values_hold_no_secret_value():
    text = (DEPLOY / "k8s" / "values.yaml").read_text()
    values = yaml.safe_load(text)
    assert values["generatePostgresqlPasswordSecret"] is False and values["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    for key, value in _leaves(values):
        assert not re.search(r"(password|secret_key|token|api_key)$", key, re.I) or value in (None, ""), key
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", str(value)), key  # no credentials in a URL


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix.rsplit(".", 1)[-1], node


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


def test_the_dockerfile_installs_what_the_lock_pins_as_make_does():
    docker = (DEPLOY / "Dockerfile").read_text()
    make = (REPO / "Makefile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    lock = _lock()
    # the project with the lock as constraints, in both
    assert "-c requirements.lock" in docker and "-c requirements.lock" in make
    # every pinned tool the Dockerfile installs is the version make installs and the lock pins
    for name, version in re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', docker):
        assert f'"{name}=={version}"' in make, name
    # the extras it installs exist, and each of their pins is in the lock at the same version
    extras = re.search(r'"\.\[\$VLLM_BUILD,([a-z0-9,]+)\]"', docker).group(1).split(",") + ["cpu", "gpu"]
    for extra in extras:
        block = re.search(rf"^{extra} = \[(.*?)^\]", pyproject, re.S | re.M)
        assert block, extra
        for name, version in re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?==([^"]+)"', block.group(1)):
            key = re.sub(r"[-_.]+", "-", name.lower())
            # the lock is solved for the CPU build (vllm, the GPU build, is the one pin it cannot hold), and
            # leaves torch to the extra's exact pin: pip takes 2.13.0 from the CPU wheel (+cpu) beside it
            if extra != "gpu" and key != "torch":
                assert lock.get(key) == version, (extra, name, version, lock.get(key))
    # on the CPU build, the same CUDA-linked packages are removed as make removes
    removed = "torchvision torchaudio torchcodec triton"
    assert f"uninstall --yes {removed}" in docker and f"uninstall --quiet --yes {removed}" in make
