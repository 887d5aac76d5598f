#!/bin/bash
# usage: zk-start.sh PORT DIR  -> prints pid
PORT=$1; DIR=$2
rm -rf $DIR; mkdir -p $DIR/data
cat > $DIR/zoo.cfg <<CFG
tickTime=2000
dataDir=$DIR/data
clientPort=$PORT
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
CFG
taskset -c 0 java -Xms1g -Xmx1g -Dzookeeper.admin.enableServer=false -Dzookeeper.4lw.commands.whitelist=* -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar org.apache.zookeeper.server.ZooKeeperServerMain $DIR/zoo.cfg > $DIR/server.log 2>&1 &
echo $!
