#!/bin/bash
# usage: ab.sh VARIANT "1 8 64" SECONDS
V=$1; LEVELS=${2:-"1 8 64"}; SECS=${3:-3}
cd /tmp/icpu
export JWT_SECRET=bench-secret-0123456789abcdefghijklmnopqrstuvwxyz
SCHEMA=icpu_$(echo $V | tr A-Z a-z)_$RANDOM
sed "s/schema: icpu_prof/schema: $SCHEMA/; s/icpu_prof:/$SCHEMA:/" chat-server.yaml > cfg-$V/chat-server.yaml 2>/dev/null || { mkdir -p cfg-$V; sed "s/schema: icpu_prof/schema: $SCHEMA/; s/icpu_prof:/$SCHEMA:/" chat-server.yaml > cfg-$V/chat-server.yaml; }
cd cfg-$V
taskset -c 0 node /tmp/icpu/run-$V.mjs serve --role all > chatd.log 2>&1 &
PID=$!
for i in $(seq 50); do curl -sf localhost:39411/readyz >/dev/null && break; sleep 0.2; done
(cd /work/wt/ingestcpu && taskset -c 1 node scripts/bench/loadgen.mjs --mode ingest --http http://127.0.0.1:39411 --concurrency 16 --seconds 3 >/dev/null)
for c in $LEVELS; do
  a=$(awk '{print $14+$15}' /proc/$PID/stat)
  R=$(cd /work/wt/ingestcpu && taskset -c 1 node scripts/bench/loadgen.mjs --mode ingest --http http://127.0.0.1:39411 --concurrency $c --seconds $SECS | grep RESULT)
  b=$(awk '{print $14+$15}' /proc/$PID/stat)
  echo "$R" | V=$V C=$c T=$((b-a)) node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s.replace("RESULT ",""));console.log(`${process.env.V} c=${process.env.C} ${r.perSecond.toFixed(0)} msg/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} cpu ${(process.env.T*10000/ (r.ok+process.env.C*1)).toFixed(0)} us/msg`)})'
done
kill $PID; wait $PID 2>/dev/null
