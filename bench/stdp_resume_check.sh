# Full-scale resume check of launch.stdp (results/local.md): SIGTERM after 30 logged R-STDP epochs, then the same command again.
cd "$(dirname "$0")/.."  # the repository root
W=/tmp/s13/best_resume
CMD="python -m launch.stdp --workdir=$W --c2=100 --epochs3=60 --rstdp_scale=4 --shifts=8 --rstdp_decay=linear --dropout=0.25"
rm -rf $W
taskset -c 0 $CMD > /tmp/s13/best_a.log 2>&1 &
PID=$!
while [ ! -f $W/history.jsonl ] || [ $(wc -l < $W/history.jsonl) -lt 30 ]; do sleep 2; done
kill -TERM $PID; wait $PID; echo "first rc=$?" >> /tmp/s13/best_a.log
taskset -c 0 $CMD > /tmp/s13/best_b.log 2>&1; echo "second rc=$?" >> /tmp/s13/best_b.log
