#!/bin/bash
# usage: ab.sh CLIENT [args]  (uses zkpid/port or PID/PORT env)
PID=${PID:-$(cat ${WORK:-/tmp/zkexp}/zkpid)}; PORT=${PORT:-$(cat ${WORK:-/tmp/zkexp}/port)}
python3 ${WORK:-/tmp/zkexp}/sampler.py $PID $PORT ${SAMPLE:-18} > /tmp/zk-sampler.out &
SP=$!
${WORK:-/tmp/zkexp}/run1.sh $PID $PORT "$@"
wait $SP
cat /tmp/zk-sampler.out
