#!/bin/bash
# usage: kiln-start.sh BIN PORT DIR -> pid
BIN=$1; PORT=$2; DIR=$3
rm -rf $DIR; mkdir -p $DIR/data
cat > $DIR/zoo.cfg <<CFG
tickTime=2000
dataDir=$DIR/data
clientPort=$PORT
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
CFG
taskset -c 0 $BIN zk --config $DIR/zoo.cfg > $DIR/server.log 2>&1 &
echo $!
