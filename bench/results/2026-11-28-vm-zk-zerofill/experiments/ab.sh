#!/bin/bash
# usage: ab.sh BIN ROUNDS -> one line per run: mode ops/s p50 p99 cpu
BIN=$1; ROUNDS=${2:-3}; PORT=22181
for r in $(seq 1 $ROUNDS); do
for mode in off on; do
  DIR=/work/zkab/$mode; rm -rf $DIR; mkdir -p $DIR/data
  pre=""; [ $mode = off ] && pre="preAllocSize=0"
  printf "tickTime=2000\ndataDir=$DIR/data\nclientPort=$PORT\nmaxClientCnxns=0\nadmin.enableServer=false\n$pre\n" > $DIR/zoo.cfg
  taskset -c 0 $BIN zk --config $DIR/zoo.cfg > $DIR/server.log 2>&1 &
  SP=$!
  sleep 1
  taskset -c 1 $BIN load zk --server 127.0.0.1:$PORT --sessions 16 --in-flight 32 --mix set=100 --value-size 100 --keys 1000 --warmup 3 --duration 10 --quiet --json $DIR/r.json > $DIR/load.out 2>&1
  CPU=$(awk '{print ($14+$15)/100}' /proc/$SP/stat)
  kill $SP; wait $SP 2>/dev/null
  python3 -c "
import json
r=json.load(open('$DIR/r.json')); l=r['latency_us']; x=r.get('extra',{})
print('$mode %8.0f ops/s p50 %6.0f p99 %6.0f us  srv_cpu_us_op %s  whole_cpu_s $CPU' % (r['throughput_ops'], l['p50'], l['p99'], x.get('server_cpu_us_per_op_window')))
"
done; done
