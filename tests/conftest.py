import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
for _var in ("HF_TOKEN", "EVAL_PIPELINE_HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(_var, None)  # no test may lean on a token from the environment

from services import create_database, drop_database, free_port, postgres_server, redis_server  # noqa: E402

from eval_pipeline.stores.catalog import Catalog, tables  # noqa: E402
from eval_pipeline.stores.lake import Lake  # noqa: E402

# The pinned lm_eval CLI's session-wide runs and vLLM's OpenAI server (session fixtures, shared by the
# files that compare the product with the CLI).
pytest_plugins = ["lm_eval_cli"]

# The files that take longest (minutes: daemons, browsers, engine loads, the lm_eval CLI), run first: with
# `-n 3 --dist loadfile` the workers take files in collection order, and a long file started last would
# leave the other workers idle at the end.
LONGEST_FIRST = ["test_stack.py", "test_daemon_schedules.py", "test_fidelity.py", "test_browser_ui.py", "test_cli.py",
                 "test_backfills.py", "test_task_kinds.py", "test_schedules_nightly.py", "test_lm_eval_cases.py",
                 "test_crash.py", "test_resume_cancel.py", "test_judge_embedding.py", "test_schedules_regression.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "lm-eval-real"
CASES = SHARED / "fixtures" / "lm-eval-cases"


def shared_folder(folder: Path) -> Path:
    """A folder of ../shared (never copied here). Absent: skip, or fail in CI."""
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{folder} is missing; CI must run with ../shared beside the checkout")
        pytest.skip(f"{folder} is missing")
    return folder


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """The third-party lm-eval outputs in ../shared."""
    return shared_folder(FIXTURES)


@pytest.fixture(scope="session")
def cases() -> Path:
    """../shared/fixtures/lm-eval-cases: situations real lm-eval users hit, each with its right value."""
    return shared_folder(CASES)


@pytest.fixture
def quiet_run_config() -> dict:
    """Run config for in-process Dagster runs: console logs at ERROR only (a fresh copy per test)."""
    import copy

    from helpers import QUIET_RUN_CONFIG

    return copy.deepcopy(QUIET_RUN_CONFIG)


@pytest.fixture(scope="session")
def pg_admin_url():
    url, stop = postgres_server()
    yield url
    stop()


@pytest.fixture(scope="session")
def redis_url():
    url, stop = redis_server()
    yield url
    stop()


@pytest.fixture
def pg_url(pg_admin_url):
    url = create_database(pg_admin_url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    if request.param == "sqlite":
        cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}").migrate()
        yield cat
        cat.dispose()
    else:
        url = request.getfixturevalue("pg_url")
        cat = Catalog(url).migrate()
        yield cat
        cat.dispose()


@pytest.fixture
def sqlite_catalog(tmp_path):
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}").migrate()
    yield cat
    cat.dispose()


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3-compatible server on loopback, in its own process, with test credentials in the
    environment. (In-process, its Flask app would be imported here, and vLLM's kernel scan trips over
    Flask's request-context proxies.)"""
    import subprocess
    import time

    import httpx

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url, timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(timeout=10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint):
    import uuid

    import s3fs

    name = f"bucket-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir(name)
    return name


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama with a BPE tokenizer and a chat template, built here (no hub access)."""
    from eval_pipeline.demo.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def eval_home(request, tmp_path, monkeypatch, tiny_model):
    """A home with a suite imported from generated lm-eval results and the tiny model registered as
    `tiny` (the default); the environment points the Dagster resources at it. The catalog is SQLite,
    or PostgreSQL when the test parametrizes this fixture indirectly with "postgresql"."""
    from helpers import EVAL_TASKS, generated_folder

    from eval_pipeline.historical.importer import import_results
    from eval_pipeline.models.registry import add_model
    from eval_pipeline.stores.runtime import open_runtime
    from eval_pipeline.stores.settings import Settings

    home = tmp_path / "home"
    for var in [v for v in os.environ if v.startswith(("EVAL_PIPELINE_", "DAGSTER_HOME"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("EVAL_PIPELINE_HOME", str(home))
    if getattr(request, "param", "sqlite") == "postgresql":
        monkeypatch.setenv("EVAL_PIPELINE_DATABASE_URL", request.getfixturevalue("pg_url"))
    rt = open_runtime(Settings.from_env())
    assert rt.catalog.engine.dialect.name == getattr(request, "param", "sqlite")
    data = generated_folder(tmp_path / "data", models=("org/model-a",), tasks=EVAL_TASKS)
    result = import_results(rt.catalog, rt.lake, {"source": {"type": "path", "url": str(data)},
                                                  "suite_name": "eval suite"})
    add_model(rt.catalog, "tiny", {"backend": "vllm", "path": str(tiny_model), "dtype": "float32",
                                   "max_model_len": 256}, default=True)
    rt.suite_id = result.suite_id
    yield rt
    rt.catalog.dispose()


@contextmanager
def serving(home, *, execute: bool = False):
    """The service on a loopback port, on the test's home (whose suite belongs to org acme); yields its
    base URL. With `execute`, its own worker runs what is queued (as `serve --execute`)."""
    import uvicorn
    from sqlalchemy import update

    from eval_pipeline.api.app import create_app

    with home.catalog.session() as s:
        s.execute(update(tables.Suite).where(tables.Suite.id == home.suite_id).values(org_id="acme"))

    port = free_port()
    app = create_app(home, execute=execute, worker_interval=0.2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/healthz", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest.fixture
def api(eval_home):
    with serving(eval_home) as url:
        yield url


@pytest.fixture
def executing_api(eval_home):
    with serving(eval_home, execute=True) as url:
        yield url
