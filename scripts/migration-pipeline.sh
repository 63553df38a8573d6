#!/usr/bin/env bash
# The migration steps of CI, shared by .github/workflows/*.yml and tests/test_pipeline.py,
# so that what CI runs is what the tests run (the migration guide's "Automated Deployment"
# and "Testing Pipeline", translated to our commands).
#
#   scripts/migration-pipeline.sh deploy [--scope all|public|tenants] [--json FILE]
#       public migrations, then tenants, then the gate `migrate_tenants --check`;
#       --json FILE keeps the tenant run's results (`--format json`) in FILE.
#       --scope public|tenants runs only that part before the (full) check.
#   scripts/migration-pipeline.sh check
#       the gate alone: exit 2 when anything is pending.
#   scripts/migration-pipeline.sh test
#       the guide's three steps: dry run, a test tenant org_test_<timestamp>
#       (PIPELINE_TEST_TENANT overrides; on a fresh database its creation sets up the public
#       schema first), tenant_list.
#
# The database is the environment's (EMPLOYER_PORTAL_DB_URL or DATABASE_URL); the python is
# ${PYTHON:-python}. Exit code: the failing command's (1 failure, 2 pending, 3 drift), after a
# line naming the step.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

usage() {
  sed -n '6,16p' "$0" >&2
  exit 64
}

# step NAME COMMAND...: run a step; on failure, name it and exit with its code.
step() {
  local name="$1"
  shift
  echo "== migration-pipeline: ${name}: $*"
  local code=0
  "$@" || code=$?
  if [ "$code" -ne 0 ]; then
    echo "migration-pipeline: step '${name}' failed (exit ${code}): $*" >&2
    exit "$code"
  fi
}

manage() {
  "$PYTHON" manage.py "$@"
}

deploy() {
  local scope=all json=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --scope) scope="${2:?--scope needs all, public or tenants}"; shift 2 ;;
      --json) json="${2:?--json needs a file}"; shift 2 ;;
      *) usage ;;
    esac
  done
  case "$scope" in all|public|tenants) ;; *) usage ;; esac

  if [ "$scope" != tenants ]; then
    step public manage migrate_tenants --public --noinput
  fi
  if [ "$scope" != public ]; then
    if [ -n "$json" ]; then
      mkdir -p "$(dirname "$json")"
      step tenants run_to_file "$json" manage migrate_tenants --tenants --noinput --format json
    else
      step tenants manage migrate_tenants --tenants --noinput
    fi
  fi
  step check manage migrate_tenants --check
}

# run_to_file FILE COMMAND...: stdout to FILE (shown in the log too), the command's exit code.
run_to_file() {
  local file="$1"
  shift
  local code=0
  "$@" >"$file" || code=$?
  cat "$file"
  return "$code"
}

pipeline_test() {
  local org="${PIPELINE_TEST_TENANT:-org_test_$(date +%s)}"
  LISTING="$(mktemp)"
  trap 'rm -f "$LISTING"' EXIT
  step dry-run manage migrate_tenants --dry-run
  # On a fresh database tenant_create sets up the public schema first, by itself.
  step tenant-create manage tenant_create "$org" --name "CI test ${org}"
  step tenant-list run_to_file "$LISTING" manage tenant_list
  local schema
  schema="tenant_$(printf '%s' "$org" | tr '[:upper:]' '[:lower:]')"
  if ! grep -qF "$schema" "$LISTING"; then
    echo "migration-pipeline: step 'tenant-list' failed (exit 1): ${schema} not listed" >&2
    exit 1
  fi
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  deploy) deploy "$@" ;;
  check) step check manage migrate_tenants --check ;;
  test) pipeline_test "$@" ;;
  *) usage ;;
esac
