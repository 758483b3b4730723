#!/bin/bash
# Interleaved before/after of bench.mass_mail, one sitting. BEFORE and AFTER are exported trees
# (git archive <commit> | tar -x -C DIR); the after tree's bench/mass_mail.py (SMTP sessions and
# CPU per mail in its result) is copied into the before tree so both report the same fields.
# MAILS (default 20000) per run, ROUNDS (default "1 2") names the rounds; the before side is slow,
# so its runs are capped by --timeout.
BEFORE=${BEFORE:-/tmp/he-before} AFTER=${AFTER:-/tmp/he-after} MAILS=${MAILS:-20000} OUT=${OUT:-/tmp/mass_mail_ab}
mkdir -p "$OUT"
cp "$AFTER/bench/mass_mail.py" "$BEFORE/bench/mass_mail.py"
for round in ${ROUNDS:-1 2}; do
  for side in before after; do
    dir=$BEFORE; [ $side = after ] && dir=$AFTER
    cd "$dir"
    PYTHONPATH=$dir timeout 900 /work/main/.venv/bin/python -m bench.mass_mail --mails "$MAILS" --timeout 420 \
      --out "$OUT/${side}_${round}.json" > "$OUT/${side}_${round}.log" 2>&1
    echo "$side $round exit $? $(tail -2 "$OUT/${side}_${round}.log" | head -1)"
  done
done
