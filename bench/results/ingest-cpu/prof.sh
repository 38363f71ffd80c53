#!/bin/bash
# prof.sh VARIANT CONC OUT
V=$1; C=$2; OUT=$3
cd /tmp/icpu; export JWT_SECRET=bench-secret-0123456789abcdefghijklmnopqrstuvwxyz
SCHEMA=icpu_p$(echo $V | tr A-Z a-z)_$RANDOM; mkdir -p cfg-$V
sed "s/schema: icpu_prof/schema: $SCHEMA/; s/icpu_prof:/$SCHEMA:/" chat-server.yaml > cfg-$V/chat-server.yaml
cd cfg-$V; taskset -c 0 node --perf-basic-prof /tmp/icpu/run-$V.mjs serve --role all > chatd.log 2>&1 &
PID=$!
for i in $(seq 50); do curl -sf localhost:39411/readyz >/dev/null && break; sleep 0.2; done
cd /work/wt/ingestcpu
taskset -c 1 node scripts/bench/loadgen.mjs --mode ingest --http http://127.0.0.1:39411 --concurrency 16 --seconds 4 >/dev/null
perf record -F 999 -p $PID -o /tmp/icpu/perf-$V-$C.data -- sleep 5 >/dev/null 2>&1 &
PP=$!
R=$(taskset -c 1 node scripts/bench/loadgen.mjs --mode ingest --http http://127.0.0.1:39411 --concurrency $C --seconds 5 | grep RESULT)
wait $PP
kill $PID; wait $PID 2>/dev/null
{ echo "# perf record -F 999 -p <chatd serve --role all> during loadgen --mode ingest --concurrency $C --seconds 5 (variant $V; shared 2-core machine)"; echo "$R"; perf report -i /tmp/icpu/perf-$V-$C.data --no-children --sort sym --stdio 2>/dev/null | grep -v "^#" | grep "%" | head -60; } > $OUT
