#!/bin/bash
cd ${WORK:-/tmp/zkexp}
export LOAD=${TARGET:-target}/release/kiln-bench
for r in 1 2 3; do for m in default prealloc direct both; do
  KP=$((30000+RANDOM%20000)); 
  KILN_ZK_LOGMODE=$m KPID=$(KILN_ZK_LOGMODE=$m ./kiln-start.sh ${WORK:-/tmp/zkexp}/kiln-modes $KP ${WORK:-/tmp/zkexp}/km); sleep 1
  echo "mode=$m round=$r load=$(cut -d' ' -f1 /proc/loadavg)"
  PID=$KPID PORT=$KP ./ab.sh kl
  kill $KPID; sleep 1
done; done
