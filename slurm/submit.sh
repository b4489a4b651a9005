#!/usr/bin/env bash
# Submit the benchmark to Slurm: a job array with one task per shard and a merge job after it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"

usage() {
    cat <<EOF
Usage: slurm/submit.sh [--shards N] [--cpus N] [--time HH:MM:SS] [--output-dir DIR] [--sbatch "OPTIONS"]
                       [unified_benchmark.py options ...]

Submits a Slurm job array, one task per shard (unified_benchmark.py --shard I/N; the shards are
balanced by each model's RELATIVE_COST), and a merge job that starts when every task has ended,
whether it succeeded or not (--dependency=afterany). Prints both job ids and where the merged
report will be.

  --shards N          tasks in the array (default: one per selected model)
  --cpus N            CPUs per task (default: 8); each task runs with --threads N
  --time T            time limit per task (default: 02:00:00)
  --output-dir DIR    where shards/, merged/ and logs/ go (default: $REPO)
  --sbatch "OPTIONS"  more sbatch options for every job, e.g. "--partition=a100 --account=vision"
                      (or the SBATCH_* environment variables)
  -h, --help          this text

Every other option goes to unified_benchmark.py (see its --help), e.g. --models, --runs,
--weights. A GPU is requested per task (--gres=gpu:1) only when the cluster has GPUs
(sinfo -h -o %G). The jobs see this shell's environment; \$PYTHON (default: python3) runs the tool.

Writes:
  DIR/shards/<array job id>/<task>/    each task's results/ and viz/
  DIR/logs/bench_<array job id>_<task>.log, DIR/logs/merge_<merge job id>.log
  DIR/merged/<array job id>/results/   the merged report (JSON, CSV, Markdown, HTML)
A task that fails, is cancelled or runs out of time leaves its models marked failed in the
merged report, with its log named, and the merge job exits non-zero.

Example:
  slurm/submit.sh --runs 10 --sbatch "--partition=a100"
EOF
}

shards="" cpus=8 time_limit="02:00:00" out="$REPO" extra_sbatch="" models=""
tool=()
while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --shards) shards="${2:?--shards needs a number}"; shift 2 ;;
        --cpus) cpus="${2:?--cpus needs a number}"; shift 2 ;;
        --time) time_limit="${2:?--time needs a time limit}"; shift 2 ;;
        --output-dir) out="${2:?--output-dir needs a folder}"; shift 2 ;;
        --sbatch) extra_sbatch="${2?--sbatch needs options}"; shift 2 ;;
        --shard|--shard=*|--threads|--threads=*|--merge|--compare|--devices|--devices=*)
            echo "[ERROR] submit.sh sets $1 itself (each task is one shard on its own CPUs); leave it out" >&2
            exit 2 ;;
        --models) models="${2:?--models needs names}"; tool+=("$1" "$2"); shift 2 ;;
        --models=*) models="${1#--models=}"; tool+=("$1"); shift ;;
        *) tool+=("$1"); shift ;;
    esac
done

for value in "$cpus" "${shards:-1}"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "[ERROR] --shards and --cpus take a whole number of 1 or more, got '$value'" >&2; exit 2; }
done
if [[ -n "$models" ]]; then
    count=$(tr ',' '\n' <<<"$models" | sed 's/ //g' | grep -v '^$' | sort -u | wc -l)
else
    count=$("$PYTHON" "$REPO/unified_benchmark.py" --list-models | wc -l)
fi
shards="${shards:-$count}"
if ((shards > count)); then
    echo "[ERROR] --shards $shards for $count model(s): a shard would have nothing to run; use at most $count" >&2
    exit 2
fi

mkdir -p "$out/logs"
out="$(cd "$out" && pwd)"
gres=()
if sinfo -h -o %G | grep -q gpu; then
    gres=(--gres=gpu:1)
fi
# shellcheck disable=SC2206  # --sbatch holds several options, split on spaces on purpose
sbatch_extra=($extra_sbatch)

array=$(sbatch --parsable --job-name=vision-bench --array="0-$((shards - 1))" --cpus-per-task="$cpus" \
    --time="$time_limit" "${gres[@]}" --output="$out/logs/bench_%A_%a.log" "${sbatch_extra[@]}" \
    "$HERE/bench.sbatch" "$shards" "$out" "$REPO" "${tool[@]}")
array="${array%%;*}"   # --parsable prints "id" or "id;cluster"
merge=$(sbatch --parsable --job-name=vision-bench-merge --dependency="afterany:$array" --cpus-per-task=1 \
    --time=00:30:00 --output="$out/logs/merge_%j.log" "${sbatch_extra[@]}" \
    "$HERE/merge.sbatch" "$array" "$out" "$REPO")
merge="${merge%%;*}"

echo "Array job: $array ($shards task(s), ${cpus} CPU(s) each$([[ ${#gres[@]} -gt 0 ]] && echo ", one GPU each"))"
echo "Merge job: $merge (runs when every task has ended)"
echo "Shards: $out/shards/$array/<task>/"
echo "Logs: $out/logs/bench_${array}_<task>.log, $out/logs/merge_${merge}.log"
echo "Report: $out/merged/$array/results/benchmark_report_<run>.md"
