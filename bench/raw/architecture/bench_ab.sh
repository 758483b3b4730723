#!/bin/bash
# interleaved before/after: drain (with its bulk enqueue) on jobengine only
for round in 1 2 3; do
  for side in before arch; do
    cd /work/$side
    PYTHONPATH=/work/$side timeout 600 /work/main/.venv/bin/python -m bench.run --engines jobengine --workloads drain --repeat 3 --out /tmp/ab_${side}_${round}.json --quiet > /tmp/ab_${side}_${round}.log 2>&1
    echo "$side $round exit $?"
  done
done
