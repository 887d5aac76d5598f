#!/bin/bash
# usage: run1.sh PID PORT CLIENT(kl|java) [extra kiln-load args...]
# prints: client ops/s  server_cpu_s  cpu_us_per_op (whole run, like the harness)
PID=$1; PORT=$2; C=$3; shift 3
LOAD=${LOAD:-${TARGET:-target}/release/kiln-bench}
W=${W:-3}; D=${D:-10}
MIX=${MIX:-set=100}
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
c0=$(cpu)
if [ $C = kl ]; then
  out=$(taskset -c 1 $LOAD load zk --server 127.0.0.1:$PORT --quiet --rate 0 --warmup $W --duration $D --mix $MIX --sessions 16 --in-flight 32 --value-size 100 --keys 1000 "$@" 2>&1)
  ops=$(echo "$out" | grep -oP '= \K[0-9,]+(?= ops/s)' | tr -d ,)
  n=$(echo "$out" | grep -oP '^zk: \K[0-9]+')
else
  out=$(taskset -c 1 java -Xms512m -Xmx1g -cp ${KILN_ROOT:-.}/.peers/bench/zk-java:/usr/share/java/zookeeper.jar ZkLoad --server 127.0.0.1:$PORT --warmup $W --duration $D --mix $MIX --sessions 16 --in-flight 32 --value-size 100 --keys 1000 2>&1)
  ops=$(echo "$out" | grep -oP 'ops_per_sec=\K[0-9.]+')
  n=$(echo "$out" | grep -oP 'RESULT ops=\K[0-9]+')
fi
c1=$(cpu)
echo "$C ops/s=$ops n=$n server_cpu_ticks=$((c1-c0)) us_per_op=$(python3 -c "print(round(($c1-$c0)*1e4/max(1,$n),2))") $*"
