#!/bin/bash
# Run research experiments one at a time: each line of the queue file is "<name> <script> <args...>".
# Lines are consumed from the top so the queue can be edited while it runs.
Q=${1:-/tmp/umed_research/queue.txt}
cd /work/main
while true; do
  line=$(head -n1 "$Q" 2>/dev/null)
  [ -z "$line" ] && { sleep 5; [ -s "$Q" ] || exit 0; continue; }
  sed -i '1d' "$Q"
  name=$(echo "$line" | awk '{print $1}'); rest=$(echo "$line" | cut -d' ' -f2-)
  echo "$(date +%T) start $name" >> /tmp/umed_research/logs/queue.log
  UMED_THREADS=${UMED_THREADS:-1} .venv/bin/python $rest --name "$name" > /tmp/umed_research/logs/$name.log 2>&1
  echo "$(date +%T) done $name rc=$?" >> /tmp/umed_research/logs/queue.log
done
