#!/usr/bin/env bash
# Long-lived Spark processes, each in its own process group, stopped by the PID it recorded:
#   connect-start|connect-stop   the Spark Connect server (sc://127.0.0.1:15002) that Airflow tasks use
#                                as thin clients, so no task pays a JVM start
#   cluster-start|cluster-stop   a standalone master (spark://127.0.0.1:7077) and one worker, proving
#                                the cluster path on one machine
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA_ROOT=${CITYLAKE_DATA_ROOT:-$REPO/var}
RUN=$DATA_ROOT/run LOG=$DATA_ROOT/log
mkdir -p "$RUN" "$LOG"
export SPARK_LOCAL_IP=127.0.0.1 SPARK_HOME=$REPO/.venv/lib/python3.11/site-packages/pyspark
export SPARK_LOG_DIR=$LOG SPARK_PID_DIR=$RUN SPARK_WORKER_DIR=$DATA_ROOT/spark-work
PY=$REPO/.venv/bin/python
# Python workers run this environment's interpreter. Spark Connect takes it from PYSPARK_PYTHON
# in the server's environment (not from spark.pyspark.python), else from the PATH's python3,
# which lacks pyarrow: Great Expectations' JSON check runs a Python UDF.
export PYSPARK_PYTHON=$PY
CONNECT_PORT=${CITYLAKE_SPARK_CONNECT_PORT:-15002}

start() {  # start <name> <port> <command...>: run in a new session, record the PID, wait for the port
  local name=$1 port=$2; shift 2
  local pidfile=$RUN/$name.pid
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$pidfile"))"; return
  fi
  setsid "$@" >"$LOG/$name.log" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$name listening on 127.0.0.1:$port"; return; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "$name died; see $LOG/$name.log" >&2; tail -20 "$LOG/$name.log" >&2; exit 1; }
    sleep 1
  done
  echo "$name did not open port $port in 120 s; see $LOG/$name.log" >&2; exit 1
}

stop() {  # stop <name>: TERM the recorded process group, then KILL what is left
  local pidfile=$RUN/$1.pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "$1 stopped"
}

case ${1:-} in
  connect-start)
    mapfile -t args < <(cd "$REPO" && CITYLAKE_SPARK_CONNECT= "$PY" -m citylake.spark)
    start spark-connect "$CONNECT_PORT" "$SPARK_HOME/bin/spark-submit" \
      --class org.apache.spark.sql.connect.service.SparkConnectServer --name citylake-connect \
      "${args[@]}" --conf spark.connect.grpc.binding.address=127.0.0.1 \
      --conf "spark.connect.grpc.binding.port=$CONNECT_PORT" spark-internal ;;
  connect-stop) stop spark-connect ;;
  cluster-start)
    start spark-master 7077 "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
      --host 127.0.0.1 --port 7077 --webui-port 8091
    start spark-worker 8092 "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores 2 --memory 4g --webui-port 8092 spark://127.0.0.1:7077 ;;
  cluster-stop) stop spark-worker; stop spark-master ;;
  *) echo "usage: $0 connect-start|connect-stop|cluster-start|cluster-stop" >&2; exit 2 ;;
esac
