#!/usr/bin/env bash
# The core benchmarks of README.md, one JSON line each (run on an otherwise idle machine).
#   bash bench/core.sh | tee results/bench_core.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
for hoist in auto true false; do
  python3 -m bench.lif_layer --T 100 --B 64 --hoist "$hoist"
  python3 -m bench.lif_layer --T 500 --B 16 --hoist "$hoist"
done
python3 -m bench.lif_layer --T 2000 --B 16 --repeats 5
python3 -m bench.lif_layer --T 2000 --B 16 --remat 40 --repeats 5
for hoist in auto true false; do
  python3 -m bench.svae_step --hoist "$hoist"
done
