"""Imports from a Hub-compatible server on loopback, through the real huggingface_hub client."""
import json
from pathlib import Path

import pytest
from helpers import generated_folder
from helpers import run_cli as _cli
from hub_server import HubRepo, HubServer

from eval_pipeline.errors import NotFound, SourceAuthError
from eval_pipeline.historical.importer import import_results

TOKEN = "hf_caller_secret_7f3a9c"
REPO = "evalteam/lm-eval-results"


def _tree(root: Path, under: str) -> dict[str, bytes]:
    return {f"{under}/{p.relative_to(root).as_posix()}": p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "README.md"}


@pytest.fixture
def hub(real_fixtures, tmp_path):
    gen = generated_folder(tmp_path / "gen")
    repo = HubRepo(private=True)
    repo.first = repo.commit({**_tree(real_fixtures, "real"), **_tree(gen, "gen")})
    with HubServer(tokens={TOKEN}) as server:
        server.repos[REPO] = repo
        server.gen = gen
        yield server


def _hf(revision="main", **kw):
    return {"source": {"type": "huggingface", "repo": REPO, "revision": revision, **kw.pop("source", {})}, **kw}


def test_listing_under_a_prefix_records_the_commit(sqlite_catalog, lake, hub):
    r = import_results(sqlite_catalog, lake, _hf(source={"path_prefix": "real/"}), hub_token=TOKEN,
                       hub_endpoint=hub.url)
    assert (r.discovered_files, r.imported_runs, r.imported_samples, r.errors) == (4, 4, 305, [])
    assert r.source == {"type": "huggingface", "repo": REPO, "revision": hub.repos[REPO].first}
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h in hub.requests)


def test_explicit_files_are_not_limited_by_default(sqlite_catalog, lake, hub):
    files = sorted(p for p in hub.repos[REPO].commits[hub.repos[REPO].first] if "/results" in p)
    files.append("real/v0.3_pythia/160m-5shot_step143000.json")  # 0.3.x names its file freely
    r = import_results(sqlite_catalog, lake, _hf(source={"files": files}, dry_run=True), hub_token=TOKEN,
                       hub_endpoint=hub.url)
    assert r.discovered_files == len(files) == 6
    limited = import_results(sqlite_catalog, lake, _hf(source={"files": files}, limit_files=2, dry_run=True),
                             hub_token=TOKEN, hub_endpoint=hub.url)
    assert limited.discovered_files == 2


def test_a_new_commit_imports_only_what_changed(sqlite_catalog, lake, hub, tmp_path):
    repo = hub.repos[REPO]
    first = import_results(sqlite_catalog, lake, _hf(source={"path_prefix": "gen/"}), hub_token=TOKEN,
                           hub_endpoint=hub.url)
    more = generated_folder(tmp_path / "more", models=("org/model-c",))
    second_sha = repo.commit(_tree(more, "gen"))
    r = import_results(sqlite_catalog, lake, _hf(source={"path_prefix": "gen/"}), hub_token=TOKEN,
                       hub_endpoint=hub.url)
    assert (r.imported_runs, r.skipped_runs, r.source["revision"]) == (1, 2, second_sha)
    old = import_results(sqlite_catalog, lake, _hf(revision=repo.first, source={"path_prefix": "gen/"}),
                         hub_token=TOKEN, hub_endpoint=hub.url)
    assert (old.imported_runs, old.skipped_runs, old.source["revision"]) == (0, 2, repo.first)
    assert first.suite_id == r.suite_id == old.suite_id


@pytest.mark.parametrize("token", [None, "hf_wrong"])
def test_missing_or_wrong_token_is_an_auth_error(sqlite_catalog, lake, hub, token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # a server-side token must never be used instead
    with pytest.raises(SourceAuthError, match="401"):
        import_results(sqlite_catalog, lake, _hf(), hub_token=token, hub_endpoint=hub.url)


def test_missing_repo_revision_and_file(sqlite_catalog, lake, hub):
    with pytest.raises(NotFound, match="dataset repo not found: evalteam/none"):
        import_results(sqlite_catalog, lake, _hf(source={"repo": "evalteam/none"}), hub_token=TOKEN,
                       hub_endpoint=hub.url)
    with pytest.raises(NotFound, match="revision not found"):
        import_results(sqlite_catalog, lake, _hf(revision="no-such-branch"), hub_token=TOKEN,
                       hub_endpoint=hub.url)
    with pytest.raises(NotFound, match="gen/absent/results.json"):
        import_results(sqlite_catalog, lake, _hf(source={"files": ["gen/absent/results.json"]}),
                       hub_token=TOKEN, hub_endpoint=hub.url)
    with pytest.raises(NotFound, match="no-such-folder"):
        import_results(sqlite_catalog, lake, _hf(source={"path_prefix": "no-such-folder/"}),
                       hub_token=TOKEN, hub_endpoint=hub.url)


def test_cli_import_leaves_the_token_nowhere(hub, tmp_path, monkeypatch):
    home = tmp_path / "home"
    out = _cli(home, "import", "hf", REPO, "--path-prefix", "gen/", "--suite-name", "hub",
               "--metadata", "owner=eval-team", env_extra={"HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.url})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["object"], result["imported_runs"], result["source"]["revision"]) == (
        "eval.import", 2, hub.repos[REPO].first)
    assert TOKEN not in out.stdout + out.stderr

    from helpers import snapshot

    from eval_pipeline.stores.catalog import Catalog
    from eval_pipeline.stores.lake import Lake

    rows, _ = snapshot(Catalog(f"sqlite:///{home / 'catalog.db'}"), Lake(str(home / "lake")))
    assert TOKEN not in repr(rows)
    lake = Lake(str(home / "lake"))
    for path in lake.list():
        text = lake.read_table(path).to_pandas().to_json() if path.endswith(".parquet") else \
            lake.read_bytes(path).decode()
        assert TOKEN not in text, path
    for f in home.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f

    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    with dg.DagsterInstance.get() as instance:
        hist = instance.fetch_materializations(dg.AssetKey("historical_results"), limit=10).records
        suites = instance.fetch_materializations(dg.AssetKey("suite_versions"), limit=10).records
        assert (len(hist), len(suites)) == (1, 1)
        meta = hist[0].asset_materialization.metadata
        assert meta["commit"].value == hub.repos[REPO].first and meta["imported_runs"].value == 2
        assert suites[0].asset_materialization.partition == result["suite_id"]
        assert TOKEN not in repr([r.event_log_entry for r in hist + suites])


def test_cli_exit_codes(hub, tmp_path, monkeypatch):
    home = tmp_path / "home"
    bad = _cli(home, "import", "hf", REPO, "--limit-files", "500")
    assert bad.returncode == 2 and "limit_files" in json.loads(bad.stderr)["error"]["message"]
    denied = _cli(home, "import", "hf", REPO, env_extra={"HF_ENDPOINT": hub.url})
    assert denied.returncode == 2 and json.loads(denied.stderr)["error"]["code"] == "source_unauthorized"
    down = _cli(home, "import", "hf", REPO, env_extra={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert down.returncode == 1 and json.loads(down.stderr)["error"]["code"] == "source_unavailable"
    missing = _cli(home, "suites", "get", "eval_suite_nope")
    assert missing.returncode == 2 and json.loads(missing.stderr)["error"]["code"] == "not_found"
    ok = _cli(home, "import", "hf", REPO, "--dry-run", env_extra={"HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.url})
    assert ok.returncode == 0 and json.loads(ok.stdout)["dry_run"] is True
    assert json.loads(ok.stdout)["imported_samples"] == 305 + 42
    listed = _cli(home, "suites", "list")
    assert listed.returncode == 0 and json.loads(listed.stdout)["data"] == []

    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    with dg.DagsterInstance.get() as instance:  # the dry run left no Dagster event either
        for key in ("historical_results", "suite_versions"):
            assert instance.fetch_materializations(dg.AssetKey(key), limit=1).records == []
