#!/bin/bash
# interleaved old (a5cfefb, round 1) vs new (main) latency, jobengine only
for round in 1 2 3; do
  for side in old new; do
    if [ $side = old ]; then dir=/tmp/old-a5c; else dir=/work/main; fi
    cd $dir
    PYTHONPATH=$dir timeout 300 /work/main/.venv/bin/python -m bench.run --engines jobengine --workloads latency --repeat 3 --out /tmp/latab/${side}_${round}.json --quiet > /tmp/latab/${side}_${round}.log 2>&1
    echo "$side $round exit $? $(grep -o 'p50=[0-9.]*, p95=[0-9.]*, p99=[0-9.]*' /tmp/latab/${side}_${round}.log | tr '\n' ' ')"
  done
done
