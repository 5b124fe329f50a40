#!/usr/bin/env bash
# Proves the popnas-seg image on a machine without a Docker daemon or an image registry (Debian, root):
# podman (runc + cgroupfs) builds docker/Dockerfile on a locally debootstrapped Debian base, then the very
# image a user would `docker run` is exercised:
#   1. configs/quick.json runs in a container, with the config mounted at /cfg and logs/ mounted from the host;
#   2. a second run is killed midway (`podman kill`) and resumed with -r in a fresh container;
#   3. on the host, both run folders are complete (csv/training_results.csv without repeated network_id or
#      encoding, plots/*.png, report.md), owned by and readable for the host user, and the resumed run never
#      retrained a network that had finished before the kill;
#   4. bad input (missing config, config pointing to an unmounted data folder) gives the same one-line message
#      and exit code 2 in the container as outside;
#   5. `podman stop` (what `docker stop` does: SIGTERM, SIGKILL after the grace period) ends a running search
#      within STOP_LIMIT_S seconds, with exit code 143 and the resume hint in the container's output and run.log.
# Prints image size, build time and run times (container vs `python run.py -j configs/quick.json` outside).
# Exits non-zero on the first failure, always after a line "FAIL: <why>" (an ERR trap covers any command
# that fails outside an explicit check).
#
# Environment (all optional):
#   IMAGE        image tag to build                  (localhost/popnas-seg:test)
#   BASE_IMAGE   local Debian base, built if missing   (localhost/debian-base:bookworm)
#   WORK         scratch folder, kept for inspection   (a new /tmp/popnas-docker-test.XXXXXX, mode 0755 so
#                the host user can enter it)
#   DEBIAN_MIRROR  Debian archive for debootstrap      (else the first bookworm archive in the host's apt
#                sources; with neither the script stops: no mirror address is built in)
#   STOP_LIMIT_S seconds `podman stop` may take to end a run (10)
#   PYTHON       host interpreter for the outside runs ($REPO/.venv/bin/python)
#   HOST_UID/HOST_GID  the "host user" owning logs/; default the invoking user, or 1000:1000 when that is
#                root (so the test proves the non-root path rather than root reading anything)
#   SKIP_BUILD=1 reuse an existing $IMAGE
#   KILL_AFTER_NETWORKS  finished networks to wait for before the kill (1)
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-localhost/popnas-seg:test}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian-base:bookworm}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
CONFIG_REL=configs/quick.json
KILL_AFTER_NETWORKS=${KILL_AFTER_NETWORKS:-1}
RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-3600}

PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
# crun fails here (cgroups hybrid mode, rlimits): runc, cgroupfs, lower rlimits, host network (STACK.md).
RUN_FLAGS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network host)
KILL_NAME=popnas-seg-test-kill-$$
STOP_NAME=popnas-seg-test-stop-$$
STOP_LIMIT_S=${STOP_LIMIT_S:-10}

say() { printf '\n== %s\n' "$*"; }
fail() { FAILED=1; printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
FAILED=0
# A command that fails outside an explicit check (set -e) must still say why, not exit silently.
on_error() {
    local rc=$? line=$1 cmd=$2
    [ "$FAILED" = 1 ] && return
    FAILED=1
    printf '\nFAIL: line %s: `%s` exited with status %s\n' "$line" "$cmd" "$rc" >&2
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
    "${PODMAN[@]}" rm -f "$KILL_NAME" "$STOP_NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || fail "run as root: podman runs rootful here and apt-get may be needed"
[ -f "$REPO/$CONFIG_REL" ] || fail "$REPO/$CONFIG_REL is missing"
[ -x "$PYTHON" ] || fail "no host interpreter at $PYTHON (set PYTHON, or run scripts/install.sh first)"

if [ -z "${HOST_UID:-}" ]; then
    HOST_UID=${SUDO_UID:-$(id -u)}
    HOST_GID=${SUDO_GID:-$(id -g)}
    if [ "$HOST_UID" -eq 0 ]; then HOST_UID=1000; HOST_GID=1000; fi
fi
HOST_GID=${HOST_GID:-$HOST_UID}
[ "$HOST_UID" -ne 0 ] || fail "HOST_UID must not be 0 (root reads anything; the check would prove nothing)"

WORK=${WORK:-$(mktemp -d /tmp/popnas-docker-test.XXXXXX)}
mkdir -p "$WORK"
# mktemp -d makes a root-only (0700) folder: the host user could not enter it to reach logs/.
chmod 0755 "$WORK"
LOGS=$WORK/logs        # mounted at /app/logs, owned by the host user
CFG=$WORK/cfg          # mounted read-only at /cfg
OUTSIDE=$WORK/outside  # working directory of the outside runs (their logs/ lands here, not in the repo)
rm -rf "$LOGS" "$CFG" "$OUTSIDE"
mkdir -p "$LOGS" "$CFG" "$OUTSIDE"
chown "$HOST_UID:$HOST_GID" "$LOGS"
echo "scratch folder: $WORK (host user $HOST_UID:$HOST_GID)"

as_host_user() { setpriv --reuid "$HOST_UID" --regid "$HOST_GID" --clear-groups -- "$@"; }
as_host_user test -x "$LOGS" -a -w "$LOGS" \
    || fail "the host user $HOST_UID cannot enter and write $LOGS (check the modes of $WORK and its parents)"
container() { "${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" --user "$HOST_UID:$HOST_GID" \
    -v "$LOGS:/app/logs" -v "$CFG:/cfg:ro" "$@"; }

# ---------------------------------------------------------------- 0. podman, runc, debootstrap
say "container engine"
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap
fi
podman --version

# ---------------------------------------------------------------- 1. local Debian base image
BASE_BUILD_S=reused
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
    say "building $BASE_IMAGE with debootstrap"
    # DEBIAN_MIRROR or the host's apt sources; docker/debian_mirror.sh says why when neither names one.
    mirror=$(bash "$REPO/docker/debian_mirror.sh") || fail "no Debian mirror for debootstrap (see the line above)"
    echo "Debian mirror: $mirror"
    rootfs=$WORK/rootfs
    t0=$(now)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap failed (log: $WORK/debootstrap.log)"; }
    tar -C "$rootfs" -c . | "${PODMAN[@]}" import - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    BASE_BUILD_S="$(elapsed "$t0" "$(now)") s"
fi
echo "base image: $BASE_IMAGE ($BASE_BUILD_S)"

# ---------------------------------------------------------------- 2. the project image
BUILD_S="skipped (SKIP_BUILD=1)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    say "building $IMAGE from $REPO"
    # pip inside the build reaches PyPI through the host network and must trust the host's certificates;
    # they are mounted away from /etc/ssl/certs so that apt can still install ca-certificates there.
    t0=$(now)
    "${PODMAN[@]}" build "${RUN_FLAGS[@]}" \
        -v /etc/ssl/certs:/run/host-certs:ro \
        --build-arg BASE="$BASE_IMAGE" \
        --build-arg PIP_CERT_FILE=/run/host-certs/ca-certificates.crt \
        -f "$REPO/docker/Dockerfile" -t "$IMAGE" "$REPO" 2>&1 | tee "$WORK/build.log" | grep -E '^(STEP|COMMIT|--> )' || true
    [ "${PIPESTATUS[0]}" -eq 0 ] || { tail -40 "$WORK/build.log"; fail "image build failed (log: $WORK/build.log)"; }
    BUILD_S="$(elapsed "$t0" "$(now)") s"
    if grep -A1 '^STEP [0-9/]*: RUN .*install\.sh' "$WORK/build.log" | grep -q 'Using cache'; then
        BUILD_S="$BUILD_S (dependency layer cached)"
    else
        BUILD_S="$BUILD_S (dependencies installed)"
    fi
fi
"${PODMAN[@]}" image exists "$IMAGE" || fail "$IMAGE does not exist"
IMAGE_BYTES=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
IMAGE_SIZE=$(awk -v b="$IMAGE_BYTES" 'BEGIN { printf "%.2f GB", b / 1e9 }')
echo "image $IMAGE: $IMAGE_SIZE, build $BUILD_S"

# ---------------------------------------------------------------- 3. image hygiene and --help
say "image checks"
uid_in=$("${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" --entrypoint id "$IMAGE" -u)
[ "$uid_in" != 0 ] || fail "the image runs as root by default"
echo "default user uid: $uid_in"
leftovers=$("${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" --user 0 --entrypoint sh "$IMAGE" -c \
    'for t in gcc cc g++ make cmake; do command -v $t; done;
     for d in /root/.cache/pip /home/app/.cache/pip /var/lib/apt/lists/*_Packages; do [ -e "$d" ] && echo "$d"; done; true' 2>/dev/null || true)
[ -z "$leftovers" ] || fail "build tools or caches left in the image: $leftovers"
help_out=$("${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" "$IMAGE" --help) || fail "--help exited non-zero"
grep -q -- '-j' <<<"$help_out" && grep -q -- '-r' <<<"$help_out" || fail "--help does not mention -j and -r"
echo "--help: ok"

# ---------------------------------------------------------------- 4. bad input: same message, exit 2
say "bad input, container vs outside"
# Paths are identical inside and outside (the config folder is also mounted at its host path), so the
# messages can be compared byte for byte.
"$PYTHON" - "$REPO/$CONFIG_REL" "$CFG/unmounted_data.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("dataset", {})
cfg["dataset"]["name"] = None
cfg["dataset"]["path"] = "/data/popnas-seg-test-not-mounted"
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
EOF
chmod a+r "$CFG"/*.json
[ ! -e /data/popnas-seg-test-not-mounted ] || fail "/data/popnas-seg-test-not-mounted exists on the host"
compare_bad() {  # label, then the run.py arguments
    local label=$1; shift
    local in_rc=0 out_rc=0 in_err out_err
    in_err=$("${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" --user "$HOST_UID:$HOST_GID" -v "$WORK/badlogs:/app/logs" \
        -v "$CFG:$CFG:ro" "$IMAGE" "$@" 2>&1 >/dev/null) || in_rc=$?
    out_err=$(cd "$OUTSIDE" && "$PYTHON" "$REPO/run.py" "$@" 2>&1 >/dev/null) || out_rc=$?
    echo "$label: container rc=$in_rc '$in_err' | outside rc=$out_rc '$out_err'"
    [ "$out_rc" -eq 2 ] || fail "$label: outside exit code $out_rc, expected 2"
    [ "$in_rc" -eq 2 ] || fail "$label: container exit code $in_rc, expected 2"
    [ "$(printf '%s\n' "$in_err" | wc -l)" -eq 1 ] || fail "$label: container message is not one line"
    [ "$in_err" = "$out_err" ] || fail "$label: messages differ"
}
mkdir -p "$WORK/badlogs" && chown "$HOST_UID:$HOST_GID" "$WORK/badlogs"
compare_bad "missing config" -j "$CFG/does-not-exist.json"
compare_bad "unmounted data folder" -j "$CFG/unmounted_data.json"

# ---------------------------------------------------------------- 5. run 1: quick.json, config from /cfg
say "run 1: quick config in a container"
cp "$REPO/$CONFIG_REL" "$CFG/quick.json"
chmod a+r "$CFG/quick.json"
t0=$(now)
timeout "$RUN_TIMEOUT_S" "${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" --user "$HOST_UID:$HOST_GID" \
    -v "$LOGS:/app/logs" -v "$CFG:/cfg:ro" "$IMAGE" -j /cfg/quick.json --name docker_quick \
    >"$WORK/run1.log" 2>&1 || { tail -30 "$WORK/run1.log"; fail "container run 1 failed (log: $WORK/run1.log)"; }
RUN1_S=$(elapsed "$t0" "$(now)")
echo "container run: $RUN1_S s"

# ---------------------------------------------------------------- 6. run 2: kill midway, resume elsewhere
say "run 2: kill midway, resume in a fresh container"
journal=$LOGS/docker_resume/restore/journal.jsonl
"${PODMAN[@]}" run -d --name "$KILL_NAME" "${RUN_FLAGS[@]}" --user "$HOST_UID:$HOST_GID" \
    -v "$LOGS:/app/logs" "$IMAGE" -j "$CONFIG_REL" --name docker_resume >/dev/null
finished_count() { if [ -f "$journal" ]; then grep -c '"event":"network_finished"' "$journal" || true; else echo 0; fi; }
deadline=$(( $(date +%s) + RUN_TIMEOUT_S ))
while [ "$(finished_count)" -lt "$KILL_AFTER_NETWORKS" ]; do
    state=$("${PODMAN[@]}" inspect --format '{{.State.Status}}' "$KILL_NAME" 2>/dev/null || echo gone)
    if [ "$state" != running ]; then
        "${PODMAN[@]}" logs "$KILL_NAME" 2>&1 | tail -30
        fail "run 2 stopped (state $state) before $KILL_AFTER_NETWORKS network(s) finished"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "run 2: no network finished within $RUN_TIMEOUT_S s"
    sleep 0.5
done
"${PODMAN[@]}" kill "$KILL_NAME" >/dev/null
"${PODMAN[@]}" wait "$KILL_NAME" >/dev/null 2>&1 || true
"${PODMAN[@]}" logs "$KILL_NAME" >"$WORK/run2_killed.log" 2>&1 || true
"${PODMAN[@]}" rm -f "$KILL_NAME" >/dev/null
KILLED_AT_LINE=$(wc -l <"$journal")
[ -f "$LOGS/docker_resume/report.md" ] && fail "run 2 had already finished when it was killed (not midway)"
echo "killed after $(finished_count) finished network(s), journal line $KILLED_AT_LINE"
t0=$(now)
timeout "$RUN_TIMEOUT_S" "${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" --user "$HOST_UID:$HOST_GID" \
    -v "$LOGS:/app/logs" "$IMAGE" -r logs/docker_resume >"$WORK/run2_resume.log" 2>&1 \
    || { tail -30 "$WORK/run2_resume.log"; fail "resume failed (log: $WORK/run2_resume.log)"; }
RESUME_S=$(elapsed "$t0" "$(now)")
echo "resume: $RESUME_S s"

# ---------------------------------------------------------------- 6b. `docker stop` ends a run in seconds
say "podman stop ends a running search within $STOP_LIMIT_S s"
stop_journal=$LOGS/docker_stop/restore/journal.jsonl
"${PODMAN[@]}" run -d --name "$STOP_NAME" "${RUN_FLAGS[@]}" --user "$HOST_UID:$HOST_GID" \
    -v "$LOGS:/app/logs" "$IMAGE" -j "$CONFIG_REL" --name docker_stop >/dev/null
deadline=$(( $(date +%s) + RUN_TIMEOUT_S ))
until [ -f "$stop_journal" ] && grep -q '"event":"network_started"' "$stop_journal"; do
    state=$("${PODMAN[@]}" inspect --format '{{.State.Status}}' "$STOP_NAME" 2>/dev/null || echo gone)
    [ "$state" = running ] || { "${PODMAN[@]}" logs "$STOP_NAME" 2>&1 | tail -30; fail "stop run ended (state $state) before training"; }
    [ "$(date +%s)" -lt "$deadline" ] || fail "stop run: no network started within $RUN_TIMEOUT_S s"
    sleep 0.5
done
t0=$(now)
# Grace period well above the limit: a run that ignored SIGTERM would be SIGKILLed only after it (exit 137).
"${PODMAN[@]}" stop -t $(( STOP_LIMIT_S * 3 )) "$STOP_NAME" >/dev/null || fail "podman stop $STOP_NAME failed"
STOP_S=$(elapsed "$t0" "$(now)")
stop_rc=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$STOP_NAME")
"${PODMAN[@]}" logs "$STOP_NAME" >"$WORK/run_stop.log" 2>&1 || true
"${PODMAN[@]}" rm -f "$STOP_NAME" >/dev/null
echo "podman stop: ${STOP_S} s, container exit code $stop_rc"
awk -v s="$STOP_S" -v l="$STOP_LIMIT_S" 'BEGIN { exit !(s <= l) }' \
    || fail "podman stop took $STOP_S s (limit $STOP_LIMIT_S s): SIGTERM did not end the run (log: $WORK/run_stop.log)"
[ "$stop_rc" -eq 143 ] || fail "stopped container exited with $stop_rc, expected 143 (SIGTERM handled; log: $WORK/run_stop.log)"
grep -q "terminated (SIGTERM); resume with: python run.py -r " "$WORK/run_stop.log" \
    || fail "no resume hint in the stopped container's output (log: $WORK/run_stop.log)"
grep -q "resume with: python run.py -r " "$LOGS/docker_stop/run.log" \
    || fail "no resume hint in $LOGS/docker_stop/run.log"
[ -z "$(cat "$LOGS/docker_stop/restore/lock")" ] || fail "the stopped run left its lock taken"

# ---------------------------------------------------------------- 7. host-side checks of both folders
say "run folders on the host"
check_folder() {
    local dir=$1
    [ -d "$dir" ] || fail "$dir missing"
    [ -s "$dir/report.md" ] || fail "$dir/report.md missing or empty"
    compgen -G "$dir/plots/*.png" >/dev/null || fail "$dir/plots/*.png missing"
    "$PYTHON" - "$dir/csv/training_results.csv" <<'EOF' || fail "$dir/csv/training_results.csv check failed"
import csv, sys
from collections import Counter
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
if not rows:
    sys.exit(f"{sys.argv[1]}: no rows")
for column in ("network_id", "encoding"):
    dup = [v for v, n in Counter(r[column] for r in rows).items() if n > 1]
    if dup:
        sys.exit(f"{sys.argv[1]}: repeated {column}: {dup}")
print(f"{sys.argv[1]}: {len(rows)} networks, no repeats")
EOF
    local foreign unreadable
    foreign=$( { find "$dir" ! -uid "$HOST_UID" 2>&1 || true; } | head -5)
    [ -z "$foreign" ] || fail "files not owned by the host user $HOST_UID: $foreign"
    # find exits 1 when it meets a folder it cannot enter: its messages are the finding, not a crash.
    unreadable=$( { as_host_user find "$dir" ! -readable 2>&1 || true; } | head -5)
    [ -z "$unreadable" ] || fail "not readable by the host user: $unreadable"
    as_host_user cat "$dir/report.md" "$dir/csv/training_results.csv" >/dev/null || fail "host user cannot read $dir"
    echo "$dir: complete, owned by and readable for uid $HOST_UID ($(find "$dir" -type f | wc -l) files)"
}
check_folder "$LOGS/docker_quick"
check_folder "$LOGS/docker_resume"
"$PYTHON" - "$journal" "$KILLED_AT_LINE" <<'EOF' || fail "the resumed run retrained finished networks"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
cut = int(sys.argv[2])
def events(chunk):
    out = []
    for line in chunk:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a torn last line from the kill
    return out
before, after = events(lines[:cut]), events(lines[cut:])
done = {e["network_id"] for e in before if e.get("event") == "network_finished"}
again = sorted({e["network_id"] for e in after if e.get("event") == "network_started"} & done)
if again:
    sys.exit(f"networks finished before the kill were started again after it: {again}")
print(f"resume replayed {len(done)} finished network(s) without retraining, "
      f"{sum(e.get('event') == 'network_finished' for e in after)} trained after the kill")
EOF

# ---------------------------------------------------------------- 8. the same run outside a container
say "outside: python run.py -j $CONFIG_REL"
t0=$(now)
(cd "$OUTSIDE" && timeout "$RUN_TIMEOUT_S" "$PYTHON" "$REPO/run.py" -j "$REPO/$CONFIG_REL" --name outside_quick) \
    >"$WORK/outside.log" 2>&1 || { tail -30 "$WORK/outside.log"; fail "outside run failed (log: $WORK/outside.log)"; }
OUTSIDE_S=$(elapsed "$t0" "$(now)")

say "summary"
printf '%-38s %s\n' \
    "base image ($BASE_IMAGE)" "$BASE_BUILD_S" \
    "image build" "$BUILD_S" \
    "image size" "$IMAGE_SIZE" \
    "quick run, container" "$RUN1_S s" \
    "quick run, outside" "$OUTSIDE_S s" \
    "resume after kill, container" "$RESUME_S s" \
    "podman stop of a running search" "$STOP_S s" \
    "load average at the end" "$(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "PASS (scratch folder: $WORK)"
