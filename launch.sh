#!/usr/bin/env bash
# Sets up .venv (when missing or stale) and runs the project.
#
#   ./launch.sh                      the main experiment on the shipped WikiGold data
#   ./launch.sh test [pytest args]   the test suite, less the tests marked slow
#                                    (./launch.sh test -m slow runs those)
#   ./launch.sh lint [paths]         ruff check and ruff format --check (default .)
#   ./launch.sh ENTRY [flags]        python -m experiments.ENTRY [flags]
#   ./launch.sh --help               this, and the entry points (no .venv needed)
#
# Accelerators: put --accel=cuda12, --accel=cuda13 or --accel=tpu first (or set
# ACCEL=...) to install that build of JAX instead of the CPU one, e.g.
#   ./launch.sh --accel=cuda12 train --data_dir=/path/to/conll2003
#
# Versions: .venv gets the exact versions in constraints.txt (those the README's
# numbers were measured with), within the ranges of requirements.txt. Set
# LAUNCH_CONSTRAINTS=0 to install from the ranges alone (newest that fit); the
# .venv is rebuilt when this setting changes.
set -euo pipefail
cd "$(dirname "$0")"

# Entry points are the modules of experiments/ that run as a script.
entry_points() {
  grep -l "^if __name__ == '__main__':" experiments/*.py | xargs -n1 basename | sed 's/\.py$//'
}

# Help needs no .venv: this file's comment block, then each entry point with
# the first line of its docstring.
if [[ "${1:-}" == -h || "${1:-}" == --help || "${1:-}" == help ]]; then
  sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
  echo
  echo "Entry points (./launch.sh ENTRY --help lists the flags of one):"
  for name in $(entry_points); do
    printf '  %-20s %s\n' "$name" "$(sed -n '1s/^r\{0,1\}"""//p' "experiments/$name.py")"
  done
  exit 0
fi

VENV=.venv
# The accelerator of an existing .venv is kept unless another is asked for.
ACCEL="${ACCEL:-$(cat "$VENV/.accel" 2>/dev/null || echo cpu)}"
if [[ "${1:-}" == --accel=* ]]; then
  ACCEL="${1#--accel=}"
  shift
fi
case "$ACCEL" in
  cpu|cuda12|cuda13|tpu) ;;
  *) echo "launch.sh: unknown --accel=$ACCEL (use cpu, cuda12, cuda13 or tpu)" >&2; exit 2 ;;
esac

case "${LAUNCH_CONSTRAINTS:-1}" in
  1) constraints=(-c constraints.txt) ;;
  0) constraints=() ;;
  *) echo "launch.sh: LAUNCH_CONSTRAINTS=${LAUNCH_CONSTRAINTS} (use 1, the default, or 0)" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-python3}"
# The venv is rebuilt whenever requirements.txt, constraints.txt (when used),
# the accelerator or Python change.
want="$( (cat requirements.txt
          if [[ ${#constraints[@]} -gt 0 ]]; then cat constraints.txt; else echo "constraints=0"; fi
          echo "accel=$ACCEL"; "$PYTHON" --version) | sha256sum | cut -c1-16)"
have="$(cat "$VENV/.stamp" 2>/dev/null || true)"
if [[ "$want" != "$have" ]]; then
  echo "launch.sh: setting up $VENV (accel=$ACCEL) ..." >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -r requirements.txt ${constraints[@]+"${constraints[@]}"} >&2
  if [[ "$ACCEL" != cpu ]]; then
    jax_version="$("$VENV/bin/python" -c 'import jax; print(jax.__version__)')"
    "$VENV/bin/python" -m pip install -q "jax[$ACCEL]==$jax_version" ${constraints[@]+"${constraints[@]}"} >&2
  fi
  echo "$ACCEL" > "$VENV/.accel"
  echo "$want" > "$VENV/.stamp"
  echo "launch.sh: $VENV ready" >&2
fi
PY="$VENV/bin/python"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ "$ACCEL" == cpu ]]; then
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
fi

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  "")
    exec "$PY" -m experiments.sweep --workdir="runs/sweep-$(date +%Y%m%d-%H%M%S)" "$@" ;;
  test)
    # pyproject.toml gives pytest its options (-q) and the tests/ folder;
    # two workers (pytest-xdist) share the suite (pass -n N for more), a
    # module to a worker, so that a module's fixtures are made once.
    exec "$PY" -m pytest -m 'not slow' -n 2 --dist loadscope "$@" ;;
  lint)
    [[ $# -gt 0 ]] || set -- .
    status=0
    "$VENV/bin/ruff" check "$@" || status=1
    "$VENV/bin/ruff" format --check "$@" || status=1
    exit "$status" ;;
  *)
    if [[ ! -f "experiments/$cmd.py" ]] || ! grep -q "^if __name__ == '__main__':" "experiments/$cmd.py"; then
      echo "launch.sh: no experiment '$cmd' (have: $(entry_points | paste -sd' ' -); ./launch.sh --help)" >&2
      exit 2
    fi
    exec "$PY" -m "experiments.$cmd" "$@" ;;
esac
