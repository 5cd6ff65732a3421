#!/usr/bin/env bash
# Counts how often TorchSharp 0.107's Scalar finalizer race kills a training process, per optimizer and GC setting.
# Usage: bash tests/Pruning.Benchmarks/scalar-race.sh [trials per configuration (10)] [seconds per trial (15)]
# Run it alone: two TorchSharp processes on 2 cores slow each other 5-10x.
set -u
cd "$(dirname "$0")/../.."
trials=${1:-10}; seconds=${2:-15}
dotnet build -c Release tests/Pruning.Benchmarks -v q --nologo >/dev/null || exit 1
dll=tests/Pruning.Benchmarks/bin/Release/net10.0/Pruning.Benchmarks.dll
run() { # label, env, args...
  local label=$1 env=$2; shift 2
  local died=0
  for ((t = 0; t < trials; t++)); do
    env $env dotnet "$dll" scalar-race --seconds "$seconds" "$@" >/dev/null 2>&1 || died=$((died + 1))
  done
  printf '%-48s %d of %d runs died\n' "$label" "$died" "$trials"
}
for gc in "DOTNET_gcConcurrent=0" "DOTNET_gcConcurrent=1"; do
  for opt in torch-adam safe-adam torch-sgd safe-sgd; do
    run "$opt, forced GC every 1 ms, $gc" "$gc" --optimizer "$opt" --gc-every-ms 1
  done
  run "safe-adam + pruner, forced GC every 1 ms, $gc" "$gc" --optimizer safe-adam --gc-every-ms 1 --prune
done
