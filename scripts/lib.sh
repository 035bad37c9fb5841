# Shared by scripts/dev-up, scripts/test and .ci/run: install what a fresh
# Debian + Rust machine lacks, and manage the local tansu broker.
# shellcheck shell=bash

TANSU_VERSION=0.6.0
RUN_DIR=${ACCRUE_RUN_DIR:-/tmp/run}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages needed to build RocksDB, librdkafka and tansu, promtool
# (package prometheus) for the observability tests, sqlite3 to index the
# local broker's database (prepare_tansu_db), and python3-venv and pip for
# the bench's Bytewax peer (ensure_bytewax).
ensure_system_packages() {
  ensure_packages libclang-dev clang cmake pkg-config build-essential perl protobuf-compiler curl prometheus sqlite3 \
    python3-venv python3-pip
}

# Headless Chromium and its chromedriver, for the back office's browser test
# (tests/admin_browser.rs); only scripts/test needs them.
ensure_browser() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
  ensure_packages chromium chromium-driver
}

# apt-get installs those of the given Debian packages that are missing.
ensure_packages() {
  local needed=("$@")
  local missing=()
  for pkg in "${needed[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install ${missing[*]}" >&2; return 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

tansu_bin() {
  if command -v tansu >/dev/null 2>&1; then command -v tansu
  elif [ -x "$HOME/.cargo/bin/tansu" ]; then echo "$HOME/.cargo/bin/tansu"
  else return 1
  fi
}

# tansu 0.6.0 from crates.io (10 to 15 minutes, once per machine).
ensure_tansu() {
  local bin
  if bin=$(tansu_bin) && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return 0
  fi
  log "installing tansu $TANSU_VERSION (once per machine, 10-15 minutes)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
}

# Bytewax and its Kafka connector for scripts/bench's peer, in a venv of
# their own (BENCH_VENV), from PyPI; confluent-kafka's wheel bundles its
# librdkafka.
BYTEWAX_VERSION=0.21.1
CONFLUENT_KAFKA_VERSION=2.16.1
BENCH_VENV=${BENCH_VENV:-/var/tmp/accrue-bench-venv}
ensure_bytewax() {
  local py="$BENCH_VENV/bin/python"
  if [ -x "$py" ] && "$py" -c "import importlib.metadata as m, confluent_kafka
assert m.version('bytewax') == '$BYTEWAX_VERSION' and m.version('confluent-kafka') == '$CONFLUENT_KAFKA_VERSION'" 2>/dev/null; then
    return 0
  fi
  log "installing Bytewax $BYTEWAX_VERSION into $BENCH_VENV"
  python3 -m venv "$BENCH_VENV"
  "$py" -m pip install --quiet --disable-pip-version-check \
    "bytewax[kafka]==$BYTEWAX_VERSION" "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 tries=${2:-150}
  for _ in $(seq "$tries"); do
    port_open "$port" && return 0
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$port" >&2
  return 1
}

# Starts tansu on PORT with sqlite storage under $RUN_DIR unless already up.
start_broker() {
  local port=$1
  mkdir -p "$RUN_DIR"
  if port_open "$port"; then
    log "broker already listening on 127.0.0.1:$port"
    return 0
  fi
  local url="tcp://127.0.0.1:$port"
  prepare_tansu_db "$RUN_DIR/tansu.db" "$port"
  log "starting tansu on $url (sqlite storage: $RUN_DIR/tansu.db)"
  nohup "$(tansu_bin)" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine "sqlite:///$RUN_DIR/tansu.db" >"$RUN_DIR/tansu.log" 2>&1 &
  echo $! >"$RUN_DIR/tansu.pid"
  wait_port "$port" || { tail -20 "$RUN_DIR/tansu.log" >&2; return 1; }
}

# tansu 0.6.0's sqlite schema has no index on header (topition, offset_id):
# every fetched record scans every record header stored so far, so reads
# slow down quadratically (docs/benchmarks.md). accrue's outputs and
# changelog carry headers; add the index (the upstream fix is one line of
# its DDL). Likewise its compaction (every 10 minutes, for compacted topics
# such as accrue's changelog) finds older records of each key by scanning the
# partition per duplicate key: with millions of records it holds the
# database for hours and produce requests crawl (about 1,000 records/s); an
# index on record (topition, k, offset_id) makes it a lookup.
# The indexes must be made while no tansu has the database open:
# tansu sets no busy timeout, and a schema change under a live broker can
# leave its requests failing (an admin request once hung for 60 s). So a
# new database gets its schema from a tansu started once and killed, then
# the index; an existing one is indexed only if it lacks the index.
# Skipped with a warning without sqlite3.
prepare_tansu_db() {
  local db=$1 port=$2
  command -v sqlite3 >/dev/null || { log "sqlite3 not installed: tansu runs without its header index (slow reads)"; return 0; }
  if [ -f "$db" ] && [ "$(sqlite3 "$db" "select count(*) from sqlite_master where name in ('header_record', 'record_key')")" = 2 ]; then
    return 0
  fi
  if [ ! -f "$db" ] || [ -z "$(sqlite3 "$db" "select name from sqlite_master where name = 'header'")" ]; then
    local url="tcp://127.0.0.1:$port"
    "$(tansu_bin)" broker --listener-url "$url" --advertised-listener-url "$url" \
      --storage-engine "sqlite:///$db" >"$db.init.log" 2>&1 &
    local pid=$!
    wait_port "$port" || { kill "$pid" 2>/dev/null; tail -20 "$db.init.log" >&2; return 1; }
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
  fi
  sqlite3 "$db" "create index if not exists header_record on header (topition, offset_id);
    create index if not exists record_key on record (topition, k, offset_id)" ||
    log "could not index tansu's tables (slow reads and compaction)"
}

# Helpers of the bench scripts.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
# metric_at PORT NAME: the sum of every series of NAME on accrue's /metrics.
metric_at() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '{n = $1; sub(/[{].*/, "", n)} n == m {s += $NF} END {printf "%d", s}'; }
cpu_seconds() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
# per_million SECONDS EVENTS: CPU-seconds per million events, which is
# CPU-microseconds per event.
per_million() { awk -v c="$1" -v n="$2" 'BEGIN {printf "%.1f", c*1000000/n}'; }
