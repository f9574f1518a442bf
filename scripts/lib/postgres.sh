# Sourced by scripts/test and scripts/bench: starts a throwaway PostgreSQL on a free loopback
# port (as the postgres user when run as root: it refuses root), exports EASEL_TEST_POSTGRES,
# and stops it and removes its folder on exit. fsync is off unless pg_fsync=on (benchmarks).
pg_bin=${pg_bin:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
pg_dir=$(mktemp -d)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg_run=()
if [ "$(id -u)" = 0 ]; then chown postgres "$pg_dir"; pg_run=(runuser -u postgres --); fi
"${pg_run[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
"${pg_run[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -o \
  "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=${pg_fsync:-off} -c max_connections=500" start >/dev/null
trap '"${pg_run[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pg_dir"' EXIT
export EASEL_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
printf "== %s\\n" "PostgreSQL on 127.0.0.1:$pg_port"
