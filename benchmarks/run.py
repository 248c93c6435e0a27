"""`make bench`: run every benchmark once, print a table, merge results into metrics/bench.json."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from benchmarks import annotate, decode, ingest, render, train
from components.io.atomic import write_json_atomic

BENCHES = {
    "decode": decode.run,
    "ingest": ingest.run,
    "render": render.run,
    "annotate": annotate.run,
    "train": train.run,
}
OUT = Path("metrics/bench.json")


def main() -> None:
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    console = Console()
    for name, fn in BENCHES.items():
        with console.status(f"benchmark {name} ..."):
            results[name] = fn()
    results["machine"] = {
        "cpus": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    table = Table(title="mosa benchmarks")
    for col in ("benchmark", "measure", "value"):
        table.add_column(col)
    for name in BENCHES:
        for key, value in results[name].items():
            table.add_row(name, key, str(value))
    console.print(table)
    write_json_atomic(OUT, results)
    console.print(f"written {OUT}")


if __name__ == "__main__":
    main()
