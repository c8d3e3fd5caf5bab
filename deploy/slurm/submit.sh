#!/usr/bin/env bash
# Submit a cohort to Slurm: a job array of TASKS shards, then the merge as a dependent job.
#
#   MODEL=/models/brgsa MANIFEST=/data/cohort.csv OUT=/shared/run1 deploy/slurm/submit.sh TASKS [sbatch options...]
#
# Prints the two job ids. Slurm's default MaxArraySize is 1001: for 100,000 studies use e.g.
# 1,000 tasks of 100 studies. Rerunning the same command resumes (finished studies are kept).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tasks=${1:?number of array tasks}; shift
: "${MODEL:?set MODEL}" "${OUT:?set OUT}"
mkdir -p "$OUT"
array=$(sbatch --parsable --array=0-$((tasks - 1)) --export=ALL "$@" "$here/batch.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency=afterany:"$array" --export=ALL "$@" "$here/merge.sbatch")
merge=${merge%%;*}
echo "array job $array ($tasks tasks), merge job $merge"
