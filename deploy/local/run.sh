#!/usr/bin/env bash
# doodl against real services on one machine:
#   - a multi-process Ray cluster: `ray start --head` plus a second (worker) node process,
#     with token authentication wired as KubeRay wires it: the Secret named by the RayCluster's
#     authOptions (deploy/kuberay/raycluster.yaml), key auth_token, becomes RAY_AUTH_MODE and
#     RAY_AUTH_TOKEN of the Ray processes and of the job submitter; a submission without the
#     token must be refused;
#   - a PostgreSQL server and `mlflow server` backed by it;
#   - `ray job submit -- doodl sweep ...` on the cluster, then `doodl reduce` as a driver
#     joining it, then the results checked through MLflow's REST API.
# Usage (from a clone, in the environment doodl is installed in):
#   bash deploy/local/run.sh [SPEC]          # default examples/quickstart.yaml
# Needs PostgreSQL's server programs (Debian: apt-get install postgresql; the script
# installs them when run as root and they are missing) and psycopg2 (pip-installed if
# missing). Everything lives in a temporary directory (DOODL_LOCAL_DIR to choose it) and
# every process it starts is stopped on exit. Passwords are generated and passed by
# environment; the Ray token sits in the emulated Secret only while the script runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
SPEC=${1:-examples/quickstart.yaml}
SWEEP=$(python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$SPEC")
WORK=${DOODL_LOCAL_DIR:-$(mktemp -d /tmp/doodl-local.XXXXXX)}
mkdir -p "$WORK"
PG_PORT=${PG_PORT:-55432} MLFLOW_PORT=${MLFLOW_PORT:-55000}
RAY_PORT=${RAY_PORT:-56379} DASH_PORT=${DASH_PORT:-58265}
# two Ray nodes on one machine: each node's dashboard agent needs its own port
HEAD_AGENT_PORT=${HEAD_AGENT_PORT:-58266} WORKER_AGENT_PORT=${WORKER_AGENT_PORT:-58267}
PIDS=()
log() { echo "[doodl-local] $*" >&2; }

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
    sleep 2
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
    if [ -n "${PG_BIN:-}" ] && [ -d "$WORK/pg" ]; then as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1; fi
    rm -rf "$WORK/secrets"
}
trap cleanup EXIT

# --- PostgreSQL --------------------------------------------------------------------
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing PostgreSQL (Debian package postgresql)"
        (apt-get install -y -q postgresql >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null))
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    else
        echo "PostgreSQL server programs not found (Debian: apt-get install postgresql)" >&2; exit 2
    fi
fi
python -c "import psycopg2" 2>/dev/null || { log "installing psycopg2-binary"; python -m pip install -q "psycopg2-binary>=2.9"; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }

if [ "$(id -u)" = 0 ]; then  # the server refuses to run as root
    as_pg() { runuser -u postgres -- "$@"; }
    chown postgres "$WORK"
else
    as_pg() { "$@"; }
fi
PG_PASSWORD=$(python -c "import secrets; print(secrets.token_hex(16))")
log "starting PostgreSQL on port $PG_PORT"
as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1" -l "$WORK/pg.log" -w start >/dev/null
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -q -v ON_ERROR_STOP=1 \
     -c "CREATE USER mlflow PASSWORD '$PG_PASSWORD'" -c "CREATE DATABASE mlflow OWNER mlflow" >/dev/null

# --- MLflow tracking server -----------------------------------------------------------
log "starting mlflow server on port $MLFLOW_PORT (backend: PostgreSQL)"
export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow:$PG_PASSWORD@127.0.0.1:$PG_PORT/mlflow"
setsid mlflow server --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" --artifacts-destination "$WORK/mlartifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 >"$WORK/mlflow.log" 2>&1 &
PIDS+=($!)
unset MLFLOW_BACKEND_STORE_URI
TRACKING="http://127.0.0.1:$MLFLOW_PORT"
for _ in $(seq 120); do curl -fs "$TRACKING/health" >/dev/null && break; kill -0 "${PIDS[-1]}" 2>/dev/null || break; sleep 1; done
curl -fs "$TRACKING/health" >/dev/null || { tail -20 "$WORK/mlflow.log" >&2; exit 1; }

# --- Ray: a head node and a worker node, token authentication --------------------------
# The Secret KubeRay's authOptions name, in the layout it expects (one key, auth_token), here
# as a mounted Secret looks: a directory with one file per key, readable by its owner only
# (removed on exit).
SECRET=$(python -c '
import yaml
auth = yaml.safe_load(open("deploy/kuberay/raycluster.yaml"))["spec"]["authOptions"]
assert auth["mode"] == "token", auth
print(auth["secretName"])')
mkdir -p "$WORK/secrets/$SECRET" && chmod 700 "$WORK/secrets"
(umask 077; python -c "import secrets; print(secrets.token_hex(32), end='')" >"$WORK/secrets/$SECRET/auth_token")
# what KubeRay puts in every Ray container and in the job submitter from that Secret
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(cat "$WORK/secrets/$SECRET/auth_token")
export RAY_AUTH_TOKEN
log "starting Ray head (port $RAY_PORT, dashboard $DASH_PORT) and a worker node, token from Secret $SECRET"
setsid ray start --head --block --port "$RAY_PORT" --num-cpus 1 --include-dashboard true \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASH_PORT" --dashboard-agent-listen-port "$HEAD_AGENT_PORT" \
    --disable-usage-stats >"$WORK/ray-head.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do  # the dashboard answers only with the token (401 without)
    curl -fs -H "Authorization: Bearer $RAY_AUTH_TOKEN" "http://127.0.0.1:$DASH_PORT/api/version" >/dev/null && break; sleep 1
done
setsid ray start --block --address "127.0.0.1:$RAY_PORT" --num-cpus 1 \
    --dashboard-agent-listen-port "$WORKER_AGENT_PORT" --disable-usage-stats >"$WORK/ray-worker.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do
    [ "$(ray status --address "127.0.0.1:$RAY_PORT" 2>/dev/null | grep -c '^ 1 node_')" -ge 2 ] && break; sleep 1
done
NODES=$(ray status --address "127.0.0.1:$RAY_PORT" 2>/dev/null | grep -c '^ 1 node_' || true)
[ "$NODES" -ge 2 ] || { echo "the Ray cluster has $NODES node(s), expected 2" >&2; tail -20 "$WORK/ray-worker.log" >&2; exit 1; }
log "Ray cluster up with $NODES nodes"

# --- without the token the cluster refuses: the jobs API and `ray job submit` -----------
DASH="http://127.0.0.1:$DASH_PORT"
code=000
for _ in $(seq 30); do  # the job agent comes up a little after the dashboard
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $RAY_AUTH_TOKEN" "$DASH/api/jobs/" || true)
    [ "$code" = 200 ] && break; sleep 2
done
[ "$code" = 200 ] || { echo "the jobs API answers $code with the token, expected 200" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "$DASH/api/jobs/" || true)
[ "$code" = 401 ] || { echo "the jobs API answers $code without the token, expected 401" >&2; exit 1; }
mkdir -p "$WORK/no-token-home"  # no ~/.ray/auth_token to fall back on
if env -u RAY_AUTH_TOKEN -u RAY_AUTH_MODE HOME="$WORK/no-token-home" \
    ray job submit --address "$DASH" -- echo unauthenticated >"$WORK/unauth.log" 2>&1; then
    cat "$WORK/unauth.log" >&2; echo "a job submitted without the token was accepted" >&2; exit 1
fi
grep -qi "unauthorized" "$WORK/unauth.log" \
    || { cat "$WORK/unauth.log" >&2; echo "a submission without the token failed, but not for want of it" >&2; exit 1; }
log "without the token: the jobs API answers 401 and ray job submit is refused ($(grep -oi -m1 'unauthorized[^.]*' "$WORK/unauth.log"))"

# --- the sweep as a Ray job, then the reduction as a driver joining the cluster --------
log "ray job submit -- doodl sweep $SPEC"
submitted=0
for _ in $(seq 30); do  # the job agent comes up a little after the dashboard
    if ray job submit --address "$DASH" -- \
        doodl sweep "$PWD/$SPEC" --store "$WORK/store" --tracking-uri "$TRACKING" --no-progress >"$WORK/job.log" 2>&1
    then submitted=1; break; fi
    grep -q "No available agent" "$WORK/job.log" || break
    sleep 2
done
cat "$WORK/job.log"
[ "$submitted" = 1 ] || { echo "the Ray job failed (log above)" >&2; exit 1; }
log "doodl reduce $SWEEP --address 127.0.0.1:$RAY_PORT"
doodl reduce "$SWEEP" --store "$WORK/store" --tracking-uri "$TRACKING" --address "127.0.0.1:$RAY_PORT" --no-progress

# --- check the results through MLflow's REST API ---------------------------------------
log "checking MLflow through its REST API"
python - "$TRACKING" "$SWEEP" "$WORK/store" <<'EOF'
import json, sys, urllib.parse, urllib.request
import pyarrow.parquet as pq

tracking, sweep, store = sys.argv[1:]
def call(path, body=None):
    req = urllib.request.Request(f"{tracking}/api/2.0/mlflow/{path}", method="POST" if body else "GET",
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))

exp = call(f"experiments/get-by-name?experiment_name={urllib.parse.quote(sweep)}")["experiment"]
runs, token = [], None
while True:
    body = {"experiment_ids": [exp["experiment_id"]], "max_results": 1000}
    if token:
        body["page_token"] = token
    page = call("runs/search", body)
    runs += page.get("runs", [])
    token = page.get("next_page_token")
    if not token:
        break
tags = lambda r: {t["key"]: t["value"] for t in r["data"].get("tags", [])}
metrics = lambda r: {m["key"] for m in r["data"].get("metrics", [])}
children = [r for r in runs if tags(r).get("doodl.role") == "child"]
parents = [r for r in runs if tags(r).get("doodl.role") == "parent"]
n_variants = pq.read_table(f"{store}/{sweep}/variants.parquet").num_rows
assert len(parents) == 1 and len(children) == n_variants, (len(parents), len(children), n_variants)
groups = [r for r in runs if tags(r).get("doodl.role") == "group"]
n_groups = len(set(pq.read_table(f"{store}/{sweep}/variants.parquet").column("group_id").to_pylist()))
assert len(groups) == n_groups, (len(groups), n_groups)
# the quick start's 3 seeds a group are below the Morse graph's minimum: its runs carry an
# itinerary, its groups the reason there is no verdict, and no accuracy is logged anywhere
assert all({"train_loss", "final_test_acc", "hessian_top", "koopman_run_modulus_1",
            "ntk_distance_init"} <= metrics(c) and "doodl.itinerary" in tags(c) for c in children)
assert all({"n_morse_sets", "hessian_top", "mc", "koopman_modulus_1", "ntk_distance_init"} <= metrics(g)
           and "doodl.phase" in tags(g) and "doodl.koopman_class" in tags(g) and "doodl.morse_verdict" in tags(g)
           and "outcome_accuracy" not in metrics(g) for g in groups)
assert {"n_variants_done", "koopman_classes"} <= metrics(parents[0])
print(f"MLflow at {tracking}: experiment {sweep!r}, 1 parent, {len(groups)} group and {len(children)} seed runs "
      f"with training, Morse, taxonomy, Koopman and NTK results: OK")
EOF
log "done (logs and data in $WORK)"
