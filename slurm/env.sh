# Sourced by every slurm/*.sbatch script after it has changed to the repository root (SLURM_SUBMIT_DIR):
# the Python environment, and what the jobs that a script submits itself need.
#
# Environment variables (all optional):
#   MMMLIB_PYTHON       the interpreter to run, from an environment where mmmlib is installed
#   MMMLIB_VENV         else a virtual environment to activate (default: the project's .venv of `make setup`)
#   MMMLIB_CONDA_ENV    else the conda environment to activate (default: mmm-loops, from environment.yml)
#   MMMLIB_LOG_DIR      log folder of the jobs the scripts submit themselves (default: slurm-logs)
#   MMMLIB_SBATCH_ARGS  extra sbatch options for those jobs (the merges, the 02 shard array), e.g.
#                       "--account=proj --time=30"; they come last, so they win over the scripts' own
#   MMMLIB_DEVICE       device of 03 and 04: cuda (default) or cpu
#   EXTRA_PARAMS        papermill options appended to the notebook call, e.g. "-p bootstrap 200"
#   MMMLIB_NUM_SHARDS   (01, 02) / MMMLIB_NUM_RANKS (04): the array size, when rerunning some of its tasks
# Resources: options on the sbatch line, and Slurm's own SBATCH_* variables (SBATCH_PARTITION,
# SBATCH_TIMELIMIT, SBATCH_GRES, ...), win over the #SBATCH lines of the scripts.

if [[ -n "${MMMLIB_PYTHON:-}" ]]; then
  PYTHON=${MMMLIB_PYTHON}
elif [[ -n "${MMMLIB_VENV:-}" || -f .venv/bin/activate ]]; then
  set +u   # activation scripts read unset variables
  # shellcheck disable=SC1091
  source "${MMMLIB_VENV:-.venv}/bin/activate"
  set -u
  PYTHON=python
elif command -v conda >/dev/null; then
  set +u
  eval "$(conda shell.bash hook)"
  conda activate "${MMMLIB_CONDA_ENV:-mmm-loops}"
  set -u
  PYTHON=python
else
  echo "no Python environment: set MMMLIB_PYTHON or MMMLIB_VENV, run make setup, or create the conda env" >&2
  exit 1
fi
if ! INTERPRETER=$("${PYTHON}" -c "import mmmlib, sys; print(sys.executable)"); then
  echo "${PYTHON} cannot import mmmlib: install the project into that environment (pip install -e .)" >&2
  exit 1
fi
PYTHON=${INTERPRETER}   # absolute: the jobs a script submits run the same interpreter
if [[ -n "${MMMLIB_PYTHON:-}" ]]; then
  PATH="$(dirname "${PYTHON}"):${PATH}"   # what is started by name (papermill's kernel) finds it too
  export PATH
fi
echo "job ${SLURM_JOB_ID:-}${SLURM_ARRAY_TASK_ID:+ (array task ${SLURM_ARRAY_TASK_ID})} on $(hostname): ${INTERPRETER}"

LOG_DIR=${MMMLIB_LOG_DIR:-slurm-logs}
mkdir -p "${LOG_DIR}"
DEVICE=${MMMLIB_DEVICE:-cuda}
# The jobs a script submits go to the partition of the job that submits them (then MMMLIB_SBATCH_ARGS).
PARTITION=${SLURM_JOB_PARTITION:-}
