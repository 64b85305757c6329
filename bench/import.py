"""Benchmark the historical import (not a test): samples/s, ratio to the floor, peak memory.

    .venv/bin/python bench/import.py [--files 30] [--samples 100000] [--big-gb 1.0]

Floor: reading every samples file and JSON-decoding each line in one process (orjson, the decoder the
importer uses; stdlib json reported too). Memory: one results file whose samples file is --big-gb GB,
imported in a child process whose peak RSS is read from getrusage.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from eval_pipeline.demo.synthetic import SyntheticTask, write_run
from eval_pipeline.historical.importer import import_results
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.lake import Lake


def generate(root: Path, files: int, samples: int) -> None:
    per_task = samples // files // 2
    for i in range(files):
        tasks = [SyntheticTask(f"bench_mc_{i % 5}", "multiple_choice", per_task),
                 SyntheticTask(f"bench_gen_{i % 5}", "generate_until", per_task)]
        write_run(root, f"bench-org/model-{i:02d}", tasks, seed=i, timestamp=f"2026-03-01T00-00-{i:02d}.000001")


def floor(root: Path, loads) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for path in sorted(root.rglob("samples_*.jsonl")):
        with open(path, "rb") as f:
            for line in f:
                loads(line)
                n += 1
    return time.perf_counter() - start, n


def timed_import(root: Path, work: Path) -> tuple[float, dict]:
    work.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(f"sqlite:///{work / 'catalog.db'}").migrate()
    lake = Lake(str(work / "lake"))
    start = time.perf_counter()
    result = import_results(catalog, lake, {"source": {"type": "path", "url": str(root)},
                                            "suite_name": "bench", "limit_files": 100})
    return time.perf_counter() - start, result.to_dict()


def big_file_peak_rss(gb: float, work: Path) -> dict:
    root = work / "big"
    n_docs = int(gb * 1e9 / 1140)  # a generated multiple-choice sample line is about 1.14 kB
    write_run(root, "bench-org/big", [SyntheticTask("bench_big", "multiple_choice", n_docs)], seed=0)
    size = sum(p.stat().st_size for p in root.rglob("samples_*.jsonl"))
    child = subprocess.run([sys.executable, __file__, "--child-import", str(root), str(work / "bigwork")],
                           capture_output=True, text=True, check=True)
    out = json.loads(child.stdout)
    out["samples_file_mb"] = round(size / 1e6, 1)
    return out


def child_import(root: str, work: str) -> None:
    Path(work).mkdir(parents=True, exist_ok=True)
    seconds, result = timed_import(Path(root), Path(work))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": round(seconds, 2), "samples": result["imported_samples"],
                      "peak_rss_mb": round(peak_kb / 1024, 1)}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=30)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--big-gb", type=float, default=1.0, help="0 skips the memory run")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions; medians are reported")
    p.add_argument("--child-import", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_import:
        return child_import(*args.child_import)
    with tempfile.TemporaryDirectory(prefix="eval-pipeline-bench-") as tmp:
        work = Path(tmp)
        root = work / "results"
        generate(root, args.files, args.samples)
        floor(root, orjson.loads)  # warm the page cache so every side reads from memory
        floors = [floor(root, orjson.loads) for _ in range(args.repeat)]
        floors_json = [floor(root, json.loads)[0] for _ in range(args.repeat)]
        n = floors[0][1]
        imports = []
        for i in range(args.repeat):  # each into a fresh catalog and lake
            seconds, result = timed_import(root, work / f"import{i}")
            assert result["imported_samples"] == n and result["errors"] == [], result
            imports.append(seconds)
        import_s = statistics.median(imports)
        floor_s = statistics.median(s for s, _ in floors)
        floor_json_s = statistics.median(floors_json)
        report = {
            "files": result["imported_runs"], "samples": n, "repeat": args.repeat,
            "import_seconds_median": round(import_s, 3), "import_seconds_all": [round(x, 3) for x in imports],
            "samples_per_second_median": round(n / import_s),
            "floor_orjson_seconds": round(floor_s, 3), "floor_stdlib_json_seconds": round(floor_json_s, 3),
            "ratio_to_floor_orjson": round(import_s / floor_s, 2),
            "ratio_to_floor_stdlib_json": round(import_s / floor_json_s, 2),
        }
        if args.big_gb > 0:
            report["big_file"] = big_file_peak_rss(args.big_gb, work)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
